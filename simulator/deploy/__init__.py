"""``fedleak deploy``: the multi-container deployment. Its subcommands (:mod:`.commands`), the
compose stack (:mod:`.compose_stack`), the images and their wheelhouse (:mod:`.images`), and
Flower's CLI against a running SuperLink (:mod:`.flower`). Above config and runtime; only the
CLI uses it.
"""
