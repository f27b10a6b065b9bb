"""Built-in optimizers."""
from harness import hookimpl  # noqa: F401
