"""The simulator: simulated JupyterLab users and their pods' pioneer logs, with the ground truth to check
the pipeline against (load and demo generator for `up`, the tests and the benchmarks)."""
