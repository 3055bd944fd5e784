"""Read a recipe: TOML, ``--set`` overrides, schema and plugin-parameter validation, every
problem collected and reported at once."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from wake2vec.errors import RecipeError, UnknownNameError, UserInputError
from wake2vec.recipe.schema import PluginRef, Recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Problems = list[tuple[str, str]]


def format_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("phases", 0, "learning_rate")`` -> ``phases[0].learning_rate``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of ``loc`` (for did-you-mean hints)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _field_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def pydantic_problems(exc: ValidationError, model: type[BaseModel], prefix: tuple = ()) -> Problems:
    """Turn a pydantic error into ``(path, message)`` pairs phrased for people."""
    problems: Problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-before", "function-after"))
        # pydantic adds the union member name to the path for str | table fields; drop it
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, loc)
            msg = "unknown key"
            if owner is not None:
                close = difflib.get_close_matches(str(loc[-1]), _field_keys(owner), n=1, cutoff=0.6)
                if close:
                    msg += f"; did you mean {close[0]!r}?"
                else:
                    msg += f" (allowed: {', '.join(_field_keys(owner))})"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        else:
            msg = err["msg"]
            if "input" in err and not isinstance(err["input"], (dict, list)):
                msg += f" (got {err['input']!r})"
        problems.append((format_path(prefix + loc), msg))
    return problems


# --------------------------------------------------------------------------- --set


UNSET = object()  # --set KEY=null: remove KEY, so it takes its default
_UNSET_WORDS = ("null", "none")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``a.b[0].c=value`` or ``a.b.0.c=value``; the value is read as TOML, else as a string;
    ``null`` or ``none`` (any case) is ``UNSET``."""
    if "=" not in text:
        raise UserInputError(f"--set {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip().replace("[", ".").replace("]", "")
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    if not key or any(p == "" for p in parts):
        raise UserInputError(f"--set {text!r}: {key!r} is not a dotted key path")
    if raw.strip().lower() in _UNSET_WORDS:
        return parts, UNSET
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str | int], value: Any, text: str) -> None:
    """Set ``parts`` in ``data``, creating tables as needed; an impossible path is an error."""
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = format_path(parts[:depth]) or "the recipe"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise RecipeError("--set", [(format_path(parts), f"{where} is not a list ({text!r})")])
            if part >= len(node):
                raise RecipeError(
                    "--set", [(format_path(parts), f"{where} has {len(node)} entr{'y' if len(node) == 1 else 'ies'} ({text!r})")]
                )
            if last and value is UNSET:
                raise RecipeError("--set", [(format_path(parts), f"a list entry cannot be removed ({text!r})")])
            if last:
                node[part] = value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            raise RecipeError("--set", [(format_path(parts), f"{where} is not a table ({text!r})")])
        if last and value is UNSET:
            node.pop(part, None)
        elif last:
            node[part] = value
        else:
            node = node.setdefault(part, {})


# --------------------------------------------------------------------------- loading


def read_toml(path: Path) -> dict[str, Any]:
    source = str(path)
    if not path.is_file():
        raise RecipeError(source, [("", f"no such recipe file: {path}")])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(source, [("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(source, [("", f"TOML syntax error: {exc}")]) from None


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, check_files: bool = True) -> Recipe:
    """Read, override, validate and resolve a recipe. Raises ``RecipeError`` with every problem."""
    path = Path(path)
    data = read_toml(path)
    for text in overrides:
        parts, value = parse_override(text)
        try:
            apply_override(data, parts, value, text)
        except RecipeError as exc:
            raise RecipeError(str(path), exc.problems) from None
    return validate_data(data, source=str(path), base_dir=path.resolve().parent, check_files=check_files)


def validate_data(data: dict[str, Any], *, source: str, base_dir: Path, check_files: bool = True) -> Recipe:
    files = file_problems(data, base_dir) if check_files else []
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = pydantic_problems(exc, Recipe) + _plugin_problems_raw(data) + files
        raise RecipeError(source, _dedupe(problems)) from None
    _resolve_paths(recipe, base_dir)
    problems = plugin_problems(recipe) + files
    if problems:
        raise RecipeError(source, problems)
    return recipe


def _dedupe(problems: Problems) -> Problems:
    seen, out = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _resolve_paths(recipe: Recipe, base_dir: Path) -> None:
    data = recipe.data
    for field in ("corpus", "lexicon", "morphemes", "morpheme_groups", "device_groups"):
        value = getattr(data, field)
        if value is not None and not value.is_absolute():
            setattr(data, field, (base_dir / value).resolve())
    if recipe.run.mirror_dir is not None:  # like the data files: relative to the recipe
        recipe.run.mirror_dir = (base_dir / recipe.run.mirror_dir.expanduser()).resolve()
    name = recipe.model.name
    if name and (name.startswith((".", "/", "~")) or (base_dir / name).is_dir()):
        candidate = Path(name).expanduser()
        if not candidate.is_absolute():
            candidate = (base_dir / candidate).resolve()
        recipe.model.name = str(candidate)


def file_problems(data: dict[str, Any], base_dir: Path) -> Problems:
    """Missing data files and model directories, checked on the raw recipe so that they are
    reported together with schema errors."""
    problems: Problems = []
    section = data.get("data")
    if isinstance(section, dict):
        for field in ("corpus", "lexicon", "morphemes", "morpheme_groups", "device_groups"):
            value = section.get(field)
            if isinstance(value, str):
                path = (base_dir / Path(value).expanduser()).resolve()
                if not path.is_file():
                    what = "is a directory, not a file" if path.is_dir() else "file not found"
                    problems.append((f"data.{field}", f"{what}: {path}"))
    run = data.get("run")
    mirror = run.get("mirror_dir") if isinstance(run, dict) else None
    if isinstance(mirror, str):
        parent = (base_dir / Path(mirror).expanduser()).resolve().parent
        if not parent.is_dir():
            problems.append(
                ("run.mirror_dir", f"its folder does not exist: {parent} (mount the drive or create it)"))
    model = data.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if isinstance(name, str) and name.startswith((".", "/", "~")):
        path = (base_dir / Path(name).expanduser()).resolve()
        if not path.exists():
            problems.append(("model.name", f"directory not found: {path}"))
    elif isinstance(name, str) and "/" in name:  # a hub id, unless its first part is a folder here
        path, first = base_dir / name, base_dir / name.split("/", 1)[0]
        if first.is_dir() and not path.exists():
            hint = f"not read as a hub id: {first} is a local folder"
            problems.append(("model.name", f"directory not found: {path} ({hint})"))
    return problems


# --------------------------------------------------------------------------- plugin params


def _plugin_refs(recipe: Recipe) -> list[tuple[str, str, PluginRef | None, str, dict[str, Any]]]:
    """(path, kind, ref, name, params) for every plugin the recipe names."""
    refs: list[tuple[str, str, PluginRef | None, str, dict[str, Any]]] = []
    if recipe.model.family:
        refs.append(("model.family", "model", None, recipe.model.family, recipe.model.family_params()))
    refs.append(("injection.injector", "injector", recipe.injection.injector, "", {}))
    refs.append(("injection.initializer", "initializer", recipe.injection.initializer, "", {}))
    for i, phase in enumerate(recipe.phases):
        refs.append((f"phases[{i}].strategy", "phase", None, phase.strategy, phase.params))
        for j, reg in enumerate(phase.regularizers):
            refs.append((f"phases[{i}].regularizers[{j}]", "regularizer", reg, "", {}))
    for i, metric in enumerate(recipe.analysis.metrics):
        refs.append((f"analysis.metrics[{i}]", "metric", metric, "", {}))
    return refs


def plugin_problems(recipe: Recipe) -> Problems:
    """Resolve every plugin name and validate its params against the plugin's own model."""
    from wake2vec.registry import get_registry

    registry = get_registry()
    problems: Problems = []
    for path, kind, ref, name, params in _plugin_refs(recipe):
        if ref is not None:
            name, params, name_path, params_path = ref.name, ref.params, f"{path}.name", f"{path}.params"
        else:
            name_path = path
            params_path = path.rsplit(".", 1)[0] + ".params"
        try:
            entry = registry.get(kind, name)
        except UnknownNameError as exc:
            problems.append((name_path, str(exc)))
            continue
        try:
            entry.impl.Params.model_validate(params)
        except ValidationError as exc:
            prefix = tuple(_split_path(params_path))
            problems += pydantic_problems(exc, entry.impl.Params, prefix)
    return problems


def _split_path(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.replace("[", ".").replace("]", "").split(".")]


def _plugin_problems_raw(data: dict[str, Any]) -> Problems:
    """Best-effort plugin checks on a recipe that failed schema validation, so that a bad
    plugin parameter is reported together with the schema errors."""
    from wake2vec.registry import get_registry

    registry = get_registry()
    problems: Problems = []

    def check(kind: str, ref: Any, path: str, name_key: str = "name", params: Any = None) -> None:
        if isinstance(ref, str):
            ref = {"name": ref}
        if not isinstance(ref, dict) or not isinstance(ref.get(name_key), str):
            return
        params = ref.get("params", {}) if params is None else params
        try:
            entry = registry.get(kind, ref[name_key])
        except UnknownNameError as exc:
            problems.append((f"{path}.{name_key}" if name_key == "name" else path, str(exc)))
            return
        if isinstance(params, dict):
            try:
                entry.impl.Params.model_validate(params)
            except ValidationError as exc:
                base = path if name_key == "name" else path.rsplit(".", 1)[0]
                problems.extend(pydantic_problems(exc, entry.impl.Params, tuple(_split_path(base + ".params"))))

    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("family"), str):
        check("model", model, "model.family", "family", model.get("params", {}))
    injection = data.get("injection")
    if isinstance(injection, dict):
        check("injector", injection.get("injector"), "injection.injector")
        check("initializer", injection.get("initializer"), "injection.initializer")
    phases = data.get("phases")
    if isinstance(phases, list):
        for i, phase in enumerate(phases):
            if isinstance(phase, dict):
                check("phase", phase, f"phases[{i}].strategy", "strategy", phase.get("params", {}))
    return problems


# --------------------------------------------------------------------------- output


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe, with every default, as plain JSON-compatible data."""
    return json.loads(recipe.model_dump_json(by_alias=True))


def recipe_to_json(recipe: Recipe) -> str:
    return json.dumps(recipe_to_dict(recipe), indent=2, ensure_ascii=False)
