"""Loading a benchmark file: TOML text to a validated :class:`~harness.spec.model.Spec`.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.plugin.registry import Registry

from ..errors import SpecError
from .overrides import _override_of, apply_override
from .validate import _validate

if TYPE_CHECKING:
    from .model import Spec


def load_spec(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None) -> Spec:
    """Read, override (``key.path=value`` strings) and validate a benchmark file."""
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise SpecError(source, None, problem="no such file")
    if p.is_dir():
        raise SpecError(source, None, problem="is a directory, expected a TOML benchmark file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, None, problem=f"cannot read: {exc}") from None
    return parse_spec(text, source, overrides, registry)


def parse_spec(text: str, source: str = "<string>", overrides: Sequence[str] = (),
               registry: Registry | None = None) -> Spec:
    """Validate benchmark-file text (see :func:`load_spec`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, None, problem=f"invalid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item, source)
    if registry is None:  # the installed plugins, loaded afresh
        from harness.plugin.manager import load_registry

        registry = load_registry()
    try:
        return _validate(raw, source, registry)
    except SpecError as exc:
        blamed = _override_of(exc.key, raw, overrides) if exc.source == source else None
        if blamed is None:
            raise
        raise SpecError(f"--set {blamed}", exc.key, exc.value, exc.problem) from None
