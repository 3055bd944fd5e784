"""The plugin manager: built-in plugins from a tuple, third-party ones from the ``wake2vec``
entry-point group, with an environment switch to turn any of them off."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from wake2vec import __version__, hookspecs
from wake2vec.errors import PluginError

ENTRY_POINT_GROUP = "wake2vec"
DISABLE_ENV = "WAKE2VEC_DISABLE_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "wake2vec_plugins.models.demo",
    "wake2vec_plugins.models.auto",
    "wake2vec_plugins.models.families",
    "wake2vec_plugins.injectors.whole_word",
    "wake2vec_plugins.injectors.bpe_merges",
    "wake2vec_plugins.injectors.none",
    "wake2vec_plugins.initializers.basic",
    "wake2vec_plugins.phases.embed_only",
    "wake2vec_plugins.phases.lora",
    "wake2vec_plugins.phases.morpheme_alignment",
    "wake2vec_plugins.regularizers.geometry",
    "wake2vec_plugins.metrics.geometry",
    "wake2vec_plugins.metrics.study",
    "wake2vec_plugins.observers.event_log",
    "wake2vec_plugins.observers.mirror",
)


@dataclass(frozen=True)
class Provenance:
    """Where a registered plugin came from."""

    plugin: str  # the name it is registered under (module path or entry-point name)
    distribution: str
    version: str
    builtin: bool


@dataclass(frozen=True)
class LoadFailure:
    """A third-party plugin that could not be loaded; reported once, never fatal."""

    plugin: str
    distribution: str
    version: str
    error: str

    def message(self) -> str:
        return (
            f"plugin {self.plugin!r} from distribution {self.distribution} {self.version} "
            f"could not be loaded ({self.error}); it is skipped. Disable it with "
            f"{DISABLE_ENV}={self.plugin} (or fix or uninstall {self.distribution})."
        )


@dataclass
class Plugins:
    """A loaded plugin manager plus what the registry and manifest need to know about it."""

    pm: pluggy.PluginManager
    provenance: dict[str, Provenance] = field(default_factory=dict)
    failures: list[LoadFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def active(self) -> list[Provenance]:
        return [self.provenance[name] for name in sorted(self.provenance)]


def disabled_names() -> set[str]:
    """Plugin or distribution names listed in ``WAKE2VEC_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _spec_names() -> set[str]:
    return {n for n in dir(hookspecs) if n.startswith("wake2vec_")}


def unknown_hooks(plugin: object) -> list[str]:
    """Describe functions of ``plugin`` that look like hooks but match no spec."""
    specs = _spec_names()
    problems = []
    for attr in dir(plugin):
        if not attr.startswith("wake2vec_") or attr in specs:
            continue
        if not callable(getattr(plugin, attr, None)):
            continue
        close = difflib.get_close_matches(attr, sorted(specs), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"{attr!r} is not a wake2vec hook{hint}")
    return problems


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("wake2vec")
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(*, entry_points: bool = True) -> Plugins:
    """Build a plugin manager with the built-ins and every enabled third-party plugin."""
    plugins = Plugins(pm=_new_manager())
    disabled = disabled_names()
    for module_name in BUILTIN_PLUGINS:
        if module_name in disabled or module_name.rsplit(".", 1)[-1] in disabled:
            plugins.disabled.append(module_name)
            continue
        module = importlib.import_module(module_name)
        problems = unknown_hooks(module)
        if problems:  # a bug in wake2vec itself: fail loudly
            raise PluginError(f"built-in plugin {module_name}: " + "; ".join(problems))
        plugins.pm.register(module, name=module_name)
        plugins.provenance[module_name] = Provenance(module_name, "wake2vec", __version__, True)
    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            _load_entry_point(plugins, ep, disabled)
    plugins.pm.check_pending()
    for failure in plugins.failures:
        print(f"wake2vec: warning: {failure.message()}", file=sys.stderr)
    return plugins


def _load_entry_point(plugins: Plugins, ep: metadata.EntryPoint, disabled: set[str]) -> None:
    dist_name = ep.dist.name if ep.dist is not None else "unknown"
    dist_version = ep.dist.version if ep.dist is not None else "unknown"
    if ep.name in disabled or dist_name in disabled:
        plugins.disabled.append(ep.name)
        return
    if ep.name in plugins.provenance:
        plugins.failures.append(
            LoadFailure(ep.name, dist_name, dist_version, "another plugin is registered under this name")
        )
        return
    try:
        obj = ep.load()
        problems = unknown_hooks(obj)
        if problems:
            raise PluginError("; ".join(problems))
        plugins.pm.register(obj, name=ep.name)
    except Exception as exc:  # any failure in third-party code is reported, not fatal
        plugins.failures.append(
            LoadFailure(ep.name, dist_name, dist_version, f"{type(exc).__name__}: {exc}")
        )
        return
    plugins.provenance[ep.name] = Provenance(ep.name, dist_name, dist_version, False)


_CACHE: dict[str, Plugins] = {}


def get_plugins() -> Plugins:
    """The process-wide plugin manager, loaded on first use."""
    if "plugins" not in _CACHE:
        _CACHE["plugins"] = load_plugins()
    return _CACHE["plugins"]


def reset() -> None:
    """Forget the loaded plugins (tests install and remove plugins); the registry, built from
    the plugins it was given, is rebuilt on its next use."""
    _CACHE.clear()
