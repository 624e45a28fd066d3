"""QC of a run: the dashboard (`voxhear qc report|serve`) and the datasheet (`voxhear datasheet`).

Everything is generated from the run directory (manifests, config, shards); see docs/qc.md.
"""
