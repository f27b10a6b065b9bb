"""Loading a benchmark file: TOML text to a validated :class:`~harness.spec.model.Spec`.
"""
from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.plugin.registry import Registry

from ..errors import SpecError
from .overrides import _override_of, apply_override, huge_integer_problem, is_toml_value
from .validate import _validate

if TYPE_CHECKING:
    from .model import Spec


MAX_SPEC_BYTES = 4_000_000
"""The largest benchmark file read (bytes): a benchmark file is a few kilobytes of TOML."""


def load_spec(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None) -> Spec:
    """Read, override (``key.path=value`` strings) and validate a benchmark file.

    Only a regular file of at most :data:`MAX_SPEC_BYTES` is read: a directory, a FIFO or a
    device (``/dev/zero``) is refused before it is opened, so that nothing blocks or grows."""
    return parse_spec(read_spec_text(path), str(path), overrides, registry)


def read_spec_text(path: str | Path) -> str:
    """The text of the benchmark file ``path`` (a :class:`SpecError` naming it when it is not a
    regular UTF-8 file of at most :data:`MAX_SPEC_BYTES` bytes)."""
    source = str(path)
    if not isinstance(path, (str, os.PathLike)):
        raise SpecError(source, None, problem=f"expected a benchmark file path, got {type(path).__name__}")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SpecError(source, None, problem="no such file") from None
    except (OSError, ValueError) as exc:
        raise SpecError(source, None, problem=f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError(source, None, problem="is a directory, expected a TOML benchmark file")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(source, None, problem="not a regular file (a FIFO, a device or a socket); expected a "
                        "TOML benchmark file")
    if info.st_size > MAX_SPEC_BYTES:
        raise SpecError(source, None, problem=f"{info.st_size} bytes; a benchmark file has at most "
                        f"{MAX_SPEC_BYTES} bytes")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(source, None, problem=f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:  # it grew while it was read
        raise SpecError(source, None, problem=f"more than {MAX_SPEC_BYTES} bytes; a benchmark file has at most "
                        f"{MAX_SPEC_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(source, None, problem=f"not UTF-8 text: {exc}") from None


def parse_spec(text: str, source: str = "<string>", overrides: Sequence[str] = (),
               registry: Registry | None = None) -> Spec:
    """Validate benchmark-file text (see :func:`load_spec`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, None, problem=f"invalid TOML: {exc}") from None
    except ValueError as exc:  # an integer literal of more digits than Python converts
        raise SpecError(source, None, problem=f"invalid TOML: {huge_integer_problem(exc)}") from None
    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides):
        raise SpecError("--set", None, overrides, "overrides are a list of 'key.path=value' strings, e.g. "
                        "['benchmark.seed=3']")
    created: dict[str, str] = {}
    for item in overrides:
        table = apply_override(raw, item, source)
        if table is not None:
            created[item] = table
    if registry is None:  # the installed plugins, loaded afresh
        from harness.plugin.manager import load_registry

        registry = load_registry()
    try:
        return _validate(raw, source, registry)
    except SpecError as exc:
        blamed = _override_of(exc.key, raw, overrides, created) if exc.source == source else None
        if blamed is None:
            raise
        problem = exc.problem
        text = next((o.partition("=")[2].strip() for o in reversed(overrides)
                     if o.partition("=")[0].strip() == blamed), None)
        if text is not None and isinstance(exc.value, str) and not is_toml_value(text):
            problem += (f" (the value {text!r} is not a TOML value, so it was read as a string; --set "
                        "takes TOML values: a number, \"text\", [1, 2]; expressions are not evaluated)")
        raise SpecError(f"--set {blamed}", exc.key, exc.value, problem) from None
