"""Hydra multirun sweeps: expand the overrides, validate every combination, run each
(:mod:`.runner`), as child processes or Ray jobs (:mod:`.launch`), and summarise the jobs
(:mod:`.summary`). Above the runtime; only the CLI uses it.
"""
