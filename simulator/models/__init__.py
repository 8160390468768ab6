"""The models a federation trains and the attacks invert, built by name from a ``ModelSpec``
(:mod:`.architectures`; the 1-D CNN for signals in :mod:`.signal_cnn`). The bottom layer of the
simulator: it imports no other subpackage.
"""
