"""Built-in losses."""
from harness import hookimpl  # noqa: F401
