"""Benchmarks: each writes bench/results/<name>.json with a baseline measured in the same run."""
