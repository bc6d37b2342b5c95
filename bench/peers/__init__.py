"""The contenders of `bench/run_all.py` that are not our worker, one script each (run as `-m peers.<name>`)."""
