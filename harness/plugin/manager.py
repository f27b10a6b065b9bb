"""Loading plugins: a fresh pluggy manager and component registry per call.

:func:`load_registry` (and :func:`make_plugin_manager`, which also returns the manager) builds
everything from scratch each time it is called, as pytest's ``main(args, plugins=...)`` does:
nothing is kept in a process global. The caller passes the result along (``harness.run(path,
plugins=[...])`` builds one per run; worker processes rebuild it from ``registry.plugins``).

Where plugins come from:

- the ``harness`` entry-point group, loaded by pluggy (``load_setuptools_entrypoints``), with
  the providing distribution taken from pluggy's distribution info. The built-ins ship in the
  ``harness`` distribution (the ``harness_plugins`` package) and arrive this way, like any
  third-party plugin. ``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the ``harness``
  distribution's own entry points;
- ``HARNESS_PLUGINS=mod1,mod2``: modules imported and registered by name (a plugin that is not
  packaged yet);
- ``plugins=[...]``: modules, module names, or plugin objects given in code.

Each registration hook may add components of its own kind only (an activation added from
``harness_register_losses`` is an error naming the plugin), and :meth:`pluggy.PluginManager.check_pending`
refuses a hook that no spec declares (a misspelt ``harness_register_activation``). A plugin that
fails to import, validate or register is recorded in ``registry.failures`` with its error and
does not stop the others; a plugin passed in ``plugins=[...]`` that fails raises
:class:`~harness.errors.PluginError` instead.
"""
from __future__ import annotations

import difflib
import importlib
import os
import types
from importlib import metadata
from typing import Any, Iterable

import pluggy

from harness.errors import PluginError
from harness.plugin import hookspecs
from harness.plugin.components import Component
from harness.plugin.registry import KINDS, Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT
DISTRIBUTION = "harness"
DISABLE_AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "HARNESS_PLUGINS"
LOCAL = "<local>"

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
assert set(HOOKS_BY_KIND) == set(KINDS)


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _KindRegistrar:
    """What one registration hook receives: ``add`` accepts components of the hook's kind only."""

    def __init__(self, registry: Registry, kind: str, plugin: str) -> None:
        self._registry, self._kind, self._plugin = registry, kind, plugin

    def add(self, component: type[Component]) -> None:
        kind = getattr(component, "kind", None)
        if isinstance(component, type) and issubclass(component, Component) and kind != self._kind:
            right = HOOKS_BY_KIND.get(kind or "", "no hook: unknown kind")
            raise PluginError(f"plugin {self._plugin!r} registers {component.__name__} (a {kind}) from "
                              f"{HOOKS_BY_KIND[self._kind]}; register it from {right}")
        self._registry.add(component)


def _entry_points() -> list[tuple[str, Any]]:
    """``[(distribution name, entry point)]`` of the ``harness`` group, in pluggy's order."""
    out = []
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                out.append((dist.metadata["Name"] or "<unknown>", ep))
    return out


def _load_entry_points(pm: pluggy.PluginManager, failures: list[tuple[str, str]], modules: dict[str, str]) -> None:
    """pluggy's ``load_setuptools_entrypoints``, with a broken plugin recorded (and its module)
    and skipped."""
    eps = _entry_points()
    if _autoload_disabled():
        own = {ep.name for dist, ep in eps if dist == DISTRIBUTION}
        for dist, ep in eps:
            if dist != DISTRIBUTION and ep.name not in own:
                pm.set_blocked(ep.name)
    while True:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            return
        except Exception as exc:  # the first entry point not yet loaded is the broken one
            broken = next(((dist, ep) for dist, ep in eps
                           if not pm.has_plugin(ep.name) and not pm.is_blocked(ep.name)), None)
            if broken is None:
                raise
            failures.append((f"{broken[0]}:{broken[1].name}", _error(exc)))
            modules[f"{broken[0]}:{broken[1].name}"] = broken[1].value.partition(":")[0]
            pm.set_blocked(broken[1].name)


def _module_of(plugin: Any, name: str) -> str:
    """The module a plugin object comes from (a module's own name, an object's class module)."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return getattr(type(plugin), "__module__", None) or name


def _plugin_name(plugin: Any) -> str:
    return plugin if isinstance(plugin, str) else getattr(plugin, "__name__", repr(plugin))


def plugin_list(plugins: Iterable[Any] = ()) -> tuple:
    """What ``registry.plugins`` holds for a registry built with ``plugins``: modules as their
    names, module names and plugin objects as they are (what a worker process rebuilds the
    registry from), known before the plugins are loaded."""
    return tuple(_plugin_name(p) if isinstance(p, (str, types.ModuleType)) else p for p in plugins)


def _unknown_hooks(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin name -> the problem, for every implementation of a hook no spec declares."""
    try:
        pm.check_pending()
        return {}
    except pluggy.PluginValidationError:
        pass
    out = {}
    for name in list(vars(pm.hook)):
        caller = getattr(pm.hook, name)
        if name.startswith("_") or not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        close = difflib.get_close_matches(name, list(HOOKS_BY_KIND.values()), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; the hooks are {', '.join(HOOKS_BY_KIND.values())}"
        for impl in caller.get_hookimpls():
            out[impl.plugin_name] = f"PluginError: unknown hook {name!r} in plugin {impl.plugin_name!r}{hint}"
    return out


def make_plugin_manager(plugins: Iterable[Any] = (), *, extra_plugins: Iterable[Any] = ()
                        ) -> tuple[pluggy.PluginManager, Registry]:
    """A fresh pluggy manager and the :class:`Registry` of every component it provides.

    ``plugins``: modules, importable module names or plugin objects registered besides the
    entry points and ``HARNESS_PLUGINS`` (attributed to ``"<local>"``); ``registry.plugins``
    keeps them (modules as their names) so that a worker process can rebuild the same registry
    with ``load_registry(registry.plugins)``. ``extra_plugins`` is an older name for the same.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    _load_entry_points(pm, registry.failures, registry.failure_modules)
    providers = {pm.get_name(plugin): dist.metadata["Name"] for plugin, dist in pm.list_plugin_distinfo()}

    for module_name in filter(None, (m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(","))):
        try:
            if not pm.has_plugin(module_name):
                pm.register(importlib.import_module(module_name), name=module_name)
        except Exception as exc:
            registry.failures.append((module_name, _error(exc)))
            registry.failure_modules[module_name] = module_name

    explicit: list[str] = []
    for given in (plugins, extra_plugins):
        if isinstance(given, (str, bytes, types.ModuleType)) or not isinstance(given, Iterable):
            raise PluginError(f"plugins must be a list of modules, module names or plugin objects, got "
                              f"{given!r}: write [{given!r}]")
    plugins = [*plugins, *extra_plugins]
    for plugin in plugins:
        if isinstance(plugin, (int, float, bool, bytes, type(None))):
            raise PluginError(f"plugin {plugin!r}: expected a module, a module name or a plugin object")
        name = _plugin_name(plugin)
        try:
            obj = importlib.import_module(plugin) if isinstance(plugin, str) else plugin
            if not pm.has_plugin(name):
                pm.register(obj, name=name)
            explicit.append(name)
        except Exception as exc:
            raise PluginError(f"plugin {name!r} cannot be loaded: {_error(exc)}") from exc
    registry.plugins = plugin_list(plugins)

    for name, problem in _unknown_hooks(pm).items():
        if name in explicit:
            raise PluginError(problem.removeprefix("PluginError: "))
        registry.failures.append((name, problem))
        registry.failure_modules[name] = _module_of(pm.get_plugin(name), name)
        pm.unregister(name=name)

    for kind, hook_name in HOOKS_BY_KIND.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            registry.provider = providers.get(impl.plugin_name, LOCAL)
            try:
                impl.function(registry=_KindRegistrar(registry, kind, impl.plugin_name))
            except Exception as exc:
                if impl.plugin_name in explicit:
                    raise PluginError(f"plugin {impl.plugin_name!r}: {_error(exc)}") from exc
                registry.failures.append((impl.plugin_name, _error(exc)))
                registry.failure_modules[impl.plugin_name] = _module_of(impl.plugin, impl.plugin_name)
    registry.provider = "<unknown>"
    return pm, registry


def load_registry(plugins: Iterable[Any] = ()) -> Registry:
    """A fresh :class:`Registry` of the installed plugins plus ``plugins`` (see
    :func:`make_plugin_manager`)."""
    return make_plugin_manager(plugins)[1]


def plugin_distributions(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin name -> ``"<distribution> <version>"``, from pluggy's distribution info."""
    return {pm.get_name(plugin): f"{dist.metadata['Name']} {dist.version}"
            for plugin, dist in pm.list_plugin_distinfo()}
