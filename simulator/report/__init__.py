"""End-of-run products, rebuilt from a run directory: CSVs, summary, plots, image grids and the
self-contained ``report.html`` (:mod:`.build` writes them all). Above the runtime; only the CLI
and the ServerApp's end of run use it.
"""
