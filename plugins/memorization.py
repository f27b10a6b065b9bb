"""Built-in memorization plugin (to be written)."""
from harness import hookimpl  # noqa: F401
