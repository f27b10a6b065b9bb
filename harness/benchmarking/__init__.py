"""Speed benchmarks of the numerical kernels against reference implementations.

Each module has a ``main()`` that prints a table and runs as ``python -m
harness.benchmarking.<module>``; speeds are reported as ratios measured in one process.
"""
