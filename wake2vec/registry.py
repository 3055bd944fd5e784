"""Name -> implementation for each extension kind, with provenance; refuses duplicates and
answers unknown names with the close matches."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from wake2vec.api import KIND_BASES, Params, Plugin
from wake2vec.errors import PluginError, UnknownNameError
from wake2vec.hookspecs import REGISTRATION_HOOKS
from wake2vec.plugins import Plugins, Provenance, get_plugins

KINDS: tuple[str, ...] = tuple(REGISTRATION_HOOKS)


@dataclass(frozen=True)
class Entry:
    """One registered implementation."""

    kind: str
    name: str
    impl: type[Plugin]
    provenance: Provenance

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.impl) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "plugin": self.provenance.plugin,
            "distribution": self.provenance.distribution,
            "version": self.provenance.version,
            "builtin": self.provenance.builtin,
        }


class Registry:
    """All registered implementations, by kind and name."""

    def __init__(self, plugins: Plugins):
        self.plugins = plugins
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, hook_name in REGISTRATION_HOOKS.items():
            for impl in getattr(plugins.hook, hook_name).get_hookimpls():
                provenance = plugins.provenance.get(impl.plugin_name) or Provenance(
                    impl.plugin_name, "unknown", "unknown", False
                )
                for cls in impl.function() or []:
                    self._add(kind, cls, provenance)

    def _add(self, kind: str, cls: type, provenance: Provenance) -> None:
        base = KIND_BASES[kind]
        where = f"plugin {provenance.plugin} ({provenance.distribution} {provenance.version})"
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise PluginError(f"{where} registered {cls!r} as a {kind}, but it does not derive from {base.__qualname__}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{where} registered {cls.__qualname__} without a name")
        if not (inspect.isclass(cls.Params) and issubclass(cls.Params, Params)):
            raise PluginError(f"{where}: {cls.__qualname__}.Params must derive from wake2vec.api.Params")
        existing = self._entries[kind].get(name)
        if existing is not None:
            other = existing.provenance
            raise PluginError(
                f"{kind} name {name!r} is provided twice: by plugin {other.plugin} "
                f"({other.distribution} {other.version}) and by {where}. Disable one with "
                f"WAKE2VEC_DISABLE_PLUGINS=<plugin name>."
            )
        self._entries[kind][name] = Entry(kind, name, cls, provenance)

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self._entries[kind][name]
        except KeyError:
            failed = [f.plugin for f in self.plugins.failures]
            raise UnknownNameError(kind, name, self.names(kind), failed) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def create(self, kind: str, name: str, params: dict | None = None) -> Plugin:
        """Instantiate ``name`` with validated ``params`` (raises pydantic's ValidationError)."""
        cls = self.get(kind, name).impl
        return cls(cls.Params.model_validate(params or {}))

    def family_for_model_type(self, model_type: str) -> Entry | None:
        """The model family that declares ``model_type`` (from config.json), if any."""
        for entry in self.entries("model"):
            if model_type in getattr(entry.impl, "model_types", ()):
                return entry
        return None


_CACHE: dict[str, Registry] = {}


def get_registry() -> Registry:
    """The process-wide registry, built from the loaded plugins on first use and again when
    they were reloaded (``wake2vec.plugins.reset``)."""
    plugins = get_plugins()
    found = _CACHE.get("registry")
    if found is None or found.plugins is not plugins:
        _CACHE["registry"] = found = Registry(plugins)
    return found

