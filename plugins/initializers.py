"""Built-in initializers."""
from harness import hookimpl  # noqa: F401
