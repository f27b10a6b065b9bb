"""Built-in semi_flat plugin (to be written)."""
from harness import hookimpl  # noqa: F401
