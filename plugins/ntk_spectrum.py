"""Built-in ntk_spectrum plugin (to be written)."""
from harness import hookimpl  # noqa: F401
