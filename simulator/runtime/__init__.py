"""What runs an experiment and what a run writes: the data and model of an experiment built the
same way in every process (:mod:`.experiment_data`), the checks before any work starts
(:mod:`.preflight`, :mod:`.trainability`, :mod:`.setting_warnings`), Flower's simulation engine
(:mod:`.simulation`), the run directory and its leakage rows (:mod:`.rundir`, :mod:`.results`),
the audit store (:mod:`.audit`), checkpoints and resuming (:mod:`.checkpoint`, :mod:`.resume`),
failures summarised (:mod:`.failures`) and the DP budget a run spends (:mod:`.privacy`). Above
config, data, models and metrics; below report, sweep, deploy and the CLI.
"""
