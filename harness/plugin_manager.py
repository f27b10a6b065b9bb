"""Loading plugins: the pluggy manager, entry points and the component registry.

Built-in components ship in the ``harness`` distribution (the ``harness_plugins`` package) and
are registered through the ``harness`` entry-point group exactly like third-party plugins.
Setting ``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the entry points of the ``harness``
distribution itself; ``HARNESS_PLUGINS=mod1,mod2`` additionally imports and registers the named
modules (handy for a plugin that is not packaged yet). A plugin that fails to import or to
register is recorded in ``registry.failures`` with its error and does not stop the others.
"""
from __future__ import annotations

import importlib
import os
from importlib import metadata
from typing import Iterable

import pluggy

from . import hookspecs
from .components import Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT
DISTRIBUTION = "harness"
DISABLE_AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "HARNESS_PLUGINS"

HOOKS_BY_KIND = {
    "activation": "harness_register_activations",
    "initializer": "harness_register_initializers",
    "architecture": "harness_register_architectures",
    "dataset": "harness_register_datasets",
    "loss": "harness_register_losses",
    "optimizer": "harness_register_optimizers",
    "experiment": "harness_register_experiments",
    "backend": "harness_register_backends",
}


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def make_plugin_manager(extra_plugins: Iterable[object] = ()) -> tuple[pluggy.PluginManager, Registry]:
    """Load every plugin and build the registry.

    Returns the pluggy manager and a :class:`Registry` with every component, each attributed to
    the distribution that provides it. ``extra_plugins`` are plugin objects (modules) registered
    in-process, attributed to ``"<local>"``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    providers: dict[str, str] = {}

    disabled = _autoload_disabled()
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        if disabled and dist != DISTRIBUTION:
            continue
        label = f"{dist}:{ep.name}"
        if label in seen:
            continue
        seen.add(label)
        try:
            plugin = ep.load()
            pm.register(plugin, name=label)
            providers[label] = dist
        except Exception as exc:  # a broken plugin must not take the others down
            registry.failures.append((label, f"{type(exc).__name__}: {exc}"))

    for module_name in filter(None, (m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
        try:
            plugin = importlib.import_module(module_name)
            pm.register(plugin, name=module_name)
            providers[module_name] = "<local>"
        except Exception as exc:
            registry.failures.append((module_name, f"{type(exc).__name__}: {exc}"))

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", repr(plugin))
        pm.register(plugin, name=name)
        providers[name] = "<local>"

    for hook_name in HOOKS_BY_KIND.values():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            registry.provider = providers.get(impl.plugin_name, "<local>")
            try:
                impl.function(registry=registry)
            except Exception as exc:
                registry.failures.append((impl.plugin_name, f"{type(exc).__name__}: {exc}"))
    registry.provider = "<unknown>"
    return pm, registry


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = make_plugin_manager()[1]
    return _REGISTRY
