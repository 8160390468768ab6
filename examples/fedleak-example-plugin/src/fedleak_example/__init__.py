"""An example fedleak plug-in: one attack, one model, one data set and one defense.

Nothing here is imported by fedleak's code: the entry points in ``pyproject.toml`` make
``median_ratio``, ``tanh_mlp``, ``photo_patches`` and ``random_mask`` appear in fedleak's
registries once the package is installed (``pip install examples/fedleak-example-plugin``).
"""
