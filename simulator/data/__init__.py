"""Data sets as in-memory arrays behind a name table (:mod:`.datasets`): images, tables
(:mod:`.tabular`, :mod:`.tabular_datasets`), 1-D signals (:mod:`.signal_datasets`), Hugging Face
data (:mod:`.hf_datasets`); their split among clients (:mod:`.partitioning`) and what a report
needs to know of them (:mod:`.domain`). The bottom layer of the simulator: it imports no other
subpackage.
"""
