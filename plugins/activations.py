"""Built-in activations."""
from harness import hookimpl  # noqa: F401
