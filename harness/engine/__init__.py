"""Numerical kernels: pure functions of arrays (no TOML, runner, store or CLI in here)."""
