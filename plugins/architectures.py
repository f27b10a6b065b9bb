"""Built-in architectures."""
from harness import hookimpl  # noqa: F401
