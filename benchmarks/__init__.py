"""Benchmarks: training throughput against a plain Hugging Face baseline, quality, scaling.

Run each script as a module from the repository root, e.g. `python -m benchmarks.train_throughput
--quick`. Results land in `benchmarks/results/` (markdown + JSON); docs/benchmarks.md quotes them.
"""
