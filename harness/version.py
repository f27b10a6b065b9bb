"""The package version (one place: setup.cfg reads none of it; keep the two equal)."""
__version__ = "0.1.0"
