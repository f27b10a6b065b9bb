"""Built-in quadratic_flow plugin (to be written)."""
from harness import hookimpl  # noqa: F401
