"""The plugin half of the Python API: list the components, run the conformance checks on one.

Re-exported by :mod:`harness.api` (``describe_plugins``, ``check_plugin``); the CLI's
``harness plugins`` and ``harness check-plugin`` print what these return.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any, Sequence

from harness.errors import PluginError, UserError, suggest


def _registry(registry, plugins: Sequence[Any]):
    if registry is not None:
        return registry
    from harness.plugin.manager import load_registry

    return load_registry(plugins)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def describe_plugins(plugins: Sequence[Any] = (), registry=None) -> dict:
    """``{"components": {kind: [entry, ...]}, "failures": [{"plugin", "module", "error"}]}``: every
    component with its parameters (:meth:`Component.describe`), slots (experiments), the
    distribution providing it and that distribution's version."""
    registry = _registry(registry, plugins)
    kinds: dict[str, list] = {}
    versions: dict[str, str | None] = {}
    for kind, name, component, provider in registry:
        if provider not in versions:
            versions[provider] = _version(provider) if not provider.startswith("<") else None
        entry = component.describe()
        entry["provider"] = provider
        entry["version"] = versions[provider]
        slots = getattr(component, "slots", None)
        if kind == "experiment" and slots is not None:
            entry["slots"] = {s: {"kind": k, "default": d} for s, (k, d) in dict(slots).items()}
        kinds.setdefault(kind, []).append(entry)
    return {"components": kinds,
            "failures": [{"plugin": name, "module": registry.failure_modules.get(name), "error": error}
                         for name, error in registry.failures]}


@dataclass
class PluginCheck:
    """What :func:`check_plugin` found: the component's kind, provider and check results
    (:class:`harness.plugin.conformance.CheckResult`)."""

    kind: str
    name: str
    provider: str
    results: list
    failures: str = ""
    """The plugins that failed to load (:meth:`Registry.failure_text`), "" when none did."""

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.passed)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.skipped)

    @property
    def passed(self) -> int:
        return len(self.results) - self.failed - self.skipped


def resolve_kind(name: str, kind: str | None, registry) -> str:
    """The kind of the component ``name``: ``kind`` when given (checked), else the one kind that
    has a component of that name; a :class:`UserError` (or ``PluginError``) says what is wrong."""
    from harness.plugin.registry import KINDS

    if kind is not None and kind not in KINDS:
        raise UserError(f"--kind {kind!r}: not a plugin kind{suggest(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    kinds = [kind] if kind else [k for k in KINDS if name in registry.names(k)]
    if kind and name not in registry.names(kind):
        try:
            registry.get(kind, name)
        except PluginError as exc:  # close names, and the plugins that failed to load
            raise UserError(str(exc)) from None
    if not kinds:
        every = sorted({n for k in KINDS for n in registry.names(k)})
        if registry.failures:  # the component may be in a plugin that did not load: say which and why
            raise UserError(f"no component named {name!r}{suggest(name, every)}; {registry.failure_text()}")
        raise UserError(f"no component named {name!r}{suggest(name, every)}; list them with: harness plugins")
    if len(kinds) > 1:
        raise UserError(f"{name!r} is registered as {' and '.join(kinds)}; choose one with --kind")
    return kinds[0]


def check_plugin(name: str, kind: str | None = None, plugins: Sequence[Any] = (), registry=None) -> PluginCheck:
    """Run the conformance checks (:mod:`harness.plugin.conformance`) on the registered component
    ``name`` (of ``kind``, needed only when several kinds use the name)."""
    from harness.plugin.conformance import check_component

    registry = _registry(registry, plugins)
    kind = resolve_kind(name, kind, registry)
    return PluginCheck(kind, name, registry.provider_of(kind, name), check_component(kind, name, registry),
                       registry.failure_text())
