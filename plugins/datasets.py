"""Built-in datasets."""
from harness import hookimpl  # noqa: F401
