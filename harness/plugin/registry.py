"""The registry of plugin components: every kind's components by name, with the distribution
that provides each, created with validated parameters."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from harness.errors import PluginError, suggest
from harness.plugin.components import (
    Activation,
    Architecture,
    Backend,
    Component,
    Dataset,
    Initializer,
    Loss,
    Optimizer,
)
from harness.plugin.experiment import Experiment


@functools.lru_cache(maxsize=None)
def _distribution_version(dist: str) -> str:
    if dist.startswith("<"):
        return dist
    from importlib import metadata

    try:
        return f"{dist} {metadata.version(dist)}"
    except Exception:
        return dist


KINDS: dict[str, type[Component]] = {
    cls.kind: cls
    for cls in (Activation, Initializer, Architecture, Dataset, Loss, Optimizer, Experiment, Backend)
}
"""Every plugin kind, by name, with its interface class."""


@dataclass
class Entry:
    component: type[Component]
    provider: str


class Registry:
    """All registered components, by kind and name, with the distribution providing each."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.provider = "<unknown>"
        self.failures: list[tuple[str, str]] = []
        """``(plugin, error)`` of every plugin that failed to import, validate or register."""
        self.failure_modules: dict[str, str] = {}
        """Plugin -> the module it was to be loaded from (entry point or ``HARNESS_PLUGINS``)."""
        self.plugins: tuple = ()
        """The plugins given besides the installed ones (module names or objects): a worker
        process rebuilds this registry with ``harness.plugin.manager.load_registry(plugins)``."""

    def add(self, component: type[Component]) -> None:
        """Register a component class (``registry.add(Sigmoid)``)."""
        if not (isinstance(component, type) and issubclass(component, Component)):
            raise TypeError(f"registry.add expects a Component subclass, got {component!r}")
        kind = component.kind
        if kind not in self._entries:
            raise TypeError(f"{component.__name__} has unknown kind {kind!r}")
        if not component.name:
            raise TypeError(f"{component.__name__} has no name")
        existing = self._entries[kind].get(component.name)
        if existing is not None and existing.component is not component:
            raise PluginError(f"{kind} {component.name!r} registered twice: by {existing.provider} "
                              f"and by {self.provider}")
        self._entries[kind][component.name] = Entry(component, self.provider)

    def get(self, kind: str, name: str) -> type[Any]:
        """The component class ``name`` of ``kind``; a :class:`PluginError` suggests close names."""
        entries = self._entries[kind]
        if name not in entries:
            msg = f"unknown {kind} {name!r}{suggest(name, entries)}; available: {', '.join(sorted(entries)) or 'none'}"
            if self.failures:
                msg += "; " + self.failure_text()
            raise PluginError(msg)
        return entries[name].component

    def failure_text(self) -> str:
        """``plugins that failed to load: plugin 'p' (module m): Error: ...; ...`` ("" if none)."""
        if not self.failures:
            return ""
        parts = []
        for plugin, error in self.failures:
            module = self.failure_modules.get(plugin)
            parts.append(f"plugin {plugin!r}" + (f" (module {module})" if module else "") + f": {error}")
        return "plugins that failed to load: " + "; ".join(parts)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def provider_of(self, kind: str, name: str) -> str:
        return self._entries[kind][name].provider

    def version_of(self, kind: str, name: str) -> str:
        """The version of component ``name`` that determines its results (part of a cell's
        identity, :mod:`harness.spec.cells`): ``"<distribution> <version>"`` of the distribution
        providing it, plus the component's own ``version`` attribute when it sets one
        (``"harness 0.1.0; ntk_spectrum 2"``). A component registered from a module that is not
        installed (``HARNESS_PLUGINS``) gives ``"<local>"`` (and its ``version``, if any)."""
        entry = self._entries[kind][name]
        own = getattr(entry.component, "version", None)
        text = _distribution_version(entry.provider)
        if isinstance(own, (str, int, float)) and not isinstance(own, bool) and str(own):
            text += f"; {name} {own}"
        return text

    def __iter__(self) -> Iterator[tuple[str, str, type[Component], str]]:
        for kind, entries in self._entries.items():
            for name in sorted(entries):
                yield kind, name, entries[name].component, entries[name].provider

    def create(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """The component ``name`` of ``kind`` configured with ``params`` (validated, including
        the parameters that name other components, :meth:`check_names`)."""
        component = self.get(kind, name)(**dict(params or {}))
        self.check_names(type(component), component.config, f"{kind}.{name}.")
        return component

    def check_names(self, cls: type[Component], config: Mapping[str, Any], prefix: str,
                    source: str | None = None) -> None:
        """A :class:`~harness.errors.SpecError` at ``prefix + param`` when a parameter declared
        with ``Param(component=KIND)`` names no registered component of that kind."""
        from harness.errors import SpecError

        for p in cls.params:
            value = config.get(p.name)
            if p.component is None or value is None:
                continue
            try:
                self.get(p.component, value)
            except PluginError as exc:
                raise SpecError(source, prefix + p.name, value, str(exc)) from None
