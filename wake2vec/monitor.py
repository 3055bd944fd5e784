"""Read run directories, finished or still being written, without torch: status and comparison."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError
from wake2vec.rundir import LOCK, MANIFEST
from wake2vec.training.checkpoint import _PREFIX, list_checkpoints

EVENTS = "events.jsonl"
HISTORY = "history.jsonl"
REPORT = "report.html"
# the files save_checkpoint writes; a checkpoint missing any of them cannot be resumed from
CHECKPOINT_TENSORS = ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors")
CHECKPOINT_JSON = ("state.json", "optimizer.json")
ETA_WINDOW = 20  # train rows used to estimate the time per step


# ----------------------------------------------------------------------------- tolerant readers


def require_run_dir(path: Path) -> Path:
    """``path`` if it is a wake2vec run directory, else a :class:`UserInputError` naming it."""
    if not path.exists():
        raise UserInputError(f"{path}: no such run directory")
    if not path.is_dir():
        raise UserInputError(f"{path} is not a wake2vec run directory (it is a file)")
    if not (path / MANIFEST).is_file() and not (path / LOCK).is_file():
        raise UserInputError(
            f"{path} is not a wake2vec run directory (no {MANIFEST}); pass the folder that "
            "`wake2vec run` wrote"
        )
    return path


def require_run_dirs(paths: list[Path] | tuple[Path, ...]) -> None:
    """Check every path with :func:`require_run_dir`; one error listing every bad one."""
    bad = []
    for path in paths:
        try:
            require_run_dir(path)
        except UserInputError as exc:
            bad.append(str(exc))
    if bad:
        raise UserInputError("\n".join(bad))


def read_json(path: Path, attempts: int = 5) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is absent. A file being replaced (or written
    in place) while we read is read again a few times before giving up."""
    for attempt in range(attempts):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            return value if isinstance(value, dict) else None
        except FileNotFoundError:
            if attempt == attempts - 1 or not path.parent.is_dir():
                return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            if attempt == attempts - 1:
                return None
        time.sleep(0.05)
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a line that does not parse (the half-written last line of
    a file another process is appending to) is left out."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return []
    rows = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def dig(value: Any, *keys: Any) -> Any:
    """``value[k1][k2]...`` or None as soon as a key is missing or a level is not a container."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def age_s(path: Path, now: float | None = None) -> float | None:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return max(0.0, (now if now is not None else time.time()) - mtime)


# ----------------------------------------------------------------------------- liveness


def writer_state(run_dir: Path) -> dict[str, Any]:
    """Who wrote the run last (the pid in ``run.lock``), whether that process exists and
    whether some process still holds the lock (a running ``wake2vec run``)."""
    lock = run_dir / LOCK
    state: dict[str, Any] = {"pid": None, "pid_exists": None, "lock_held": None, "alive": False}
    try:
        text = lock.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return state
    if text.isdigit():
        pid = int(text)
        state["pid"] = pid
        try:
            os.kill(pid, 0)
            state["pid_exists"] = True
        except ProcessLookupError:
            state["pid_exists"] = False
        except PermissionError:  # it exists but belongs to someone else
            state["pid_exists"] = True
        except OSError:
            state["pid_exists"] = None
    state["lock_held"] = _lock_held(lock)
    if state["lock_held"] is not None:
        state["alive"] = bool(state["lock_held"])
    else:
        state["alive"] = bool(state["pid_exists"])
    return state


def _lock_held(lock: Path) -> bool | None:
    """Whether another process holds the run's flock; None when that cannot be tested. A shared
    lock taken and dropped at once: a writer holds it exclusively, so ours fails if it runs."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- checkpoints


def check_checkpoint(path: Path) -> str | None:
    """What is wrong with the checkpoint directory ``path``, or None when it looks complete:
    every file present, the JSON files parse, the safetensors headers parse and cover the file."""
    from safetensors import safe_open

    if path.name.startswith("."):
        return "temporary directory of an interrupted save"
    if not (path / "state.json").is_file():
        return "partial: no state.json"
    missing = [n for n in CHECKPOINT_TENSORS + CHECKPOINT_JSON if not (path / n).is_file()]
    if missing:
        return f"corrupt: missing {', '.join(missing)}"
    for name in CHECKPOINT_JSON:
        try:
            json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"corrupt: {name} does not parse ({type(exc).__name__})"
    for name in CHECKPOINT_TENSORS:
        try:
            with safe_open(str(path / name), framework="numpy") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own error type
            return (
                f"corrupt: {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
    return None


def checkpoint_inventory(phase_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """Every checkpoint-like folder of a phase (complete, corrupt, partial, temporary), by step."""
    root = phase_dir / "checkpoints"
    if not root.is_dir():
        return []
    complete = set(list_checkpoints(root))
    found = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for path in entries:
        if not path.is_dir() or not path.name.lstrip(".").startswith(_PREFIX):
            continue
        digits = path.name.lstrip(".")[len(_PREFIX) :].split("-")[0]
        step = int(digits) if digits.isdigit() else None
        problem = check_checkpoint(path)
        item: dict[str, Any] = {
            "name": path.name,
            "step": step,
            "path": str(path),
            "valid": problem is None,
            "problem": problem,
            "age_s": age_s(path, now),
            "val_loss": None,
        }
        if path in complete:
            item["val_loss"] = dig(read_json(path / "state.json", attempts=1), "val_loss")
        found.append(item)
    return sorted(found, key=lambda c: (c["step"] if c["step"] is not None else -1, c["name"]))


# ----------------------------------------------------------------------------- phases


def phase_dirs(run_dir: Path) -> dict[str, Path]:
    """Phase name -> its ``NN-name`` folder."""
    found = {}
    for path in sorted(run_dir.glob("[0-9][0-9]-*")):
        if path.is_dir():
            found.setdefault(path.name[3:], path)
    return found


def planned_phases(
    manifest: dict[str, Any], events: list[dict[str, Any]], folders: dict[str, Path]
) -> list[dict[str, Any]]:
    """The phases in order with their planned steps, from the recipe, events and folders."""
    phases: dict[str, dict[str, Any]] = {}
    for spec in dig(manifest, "recipe", "phases") or []:
        if isinstance(spec, dict) and spec.get("name"):
            phases[spec["name"]] = {
                "name": spec["name"],
                "strategy": spec.get("strategy"),
                "total_steps": spec.get("steps"),
            }
    for event in events:
        if event.get("event") == "phase_start" and event.get("phase"):
            entry = phases.setdefault(event["phase"], {"name": event["phase"]})
            entry["strategy"] = event.get("strategy", entry.get("strategy"))
            entry["total_steps"] = event.get("total_steps", entry.get("total_steps"))
    for name in folders:
        phases.setdefault(name, {"name": name, "strategy": None, "total_steps": None})
    return list(phases.values())


def history_summary(rows: list[dict[str, Any]], total: int | None) -> dict[str, Any]:
    """Last and best numbers of one phase's history, and its speed over the recent steps."""
    train = [
        r for r in rows if r.get("kind", "train") == "train" and isinstance(r.get("step"), int)
    ]
    evals = [
        r for r in rows if r.get("kind") == "eval" and isinstance(r.get("val_loss"), (int, float))
    ]
    out: dict[str, Any] = {
        "step": train[-1]["step"] if train else 0,
        "total_steps": total,
        "train_loss": train[-1].get("train_loss") if train else None,
        "val_loss": None,
        "bits_per_byte": None,
        "perplexity": None,
        "val_step": None,
        "best_val_loss": None,
        "best_val_step": None,
        "seconds_per_step": None,
    }
    if evals:
        last = evals[-1]
        out.update(
            val_loss=last["val_loss"],
            bits_per_byte=last.get("bits_per_byte"),
            perplexity=last.get("perplexity"),
            val_step=last.get("step"),
        )
        best = min(evals, key=lambda r: (r["val_loss"], -r.get("step", 0)))
        out.update(best_val_loss=best["val_loss"], best_val_step=best.get("step"))
    out["seconds_per_step"] = seconds_per_step(train)
    return out


def seconds_per_step(train: list[dict[str, Any]]) -> float | None:
    """Mean seconds per step over the last rows of the current session (``elapsed_s`` restarts
    at each resume, so the window stops where it went backwards)."""
    window: list[dict[str, Any]] = []
    for row in reversed(train):
        if not isinstance(row.get("elapsed_s"), (int, float)):
            break
        if window and (
            row["elapsed_s"] > window[-1]["elapsed_s"] or row["step"] >= window[-1]["step"]
        ):
            break
        window.append(row)
        if len(window) > ETA_WINDOW:
            break
    if len(window) < 2:
        return None
    steps = window[0]["step"] - window[-1]["step"]
    seconds = window[0]["elapsed_s"] - window[-1]["elapsed_s"]
    return seconds / steps if steps > 0 and seconds >= 0 else None


# ----------------------------------------------------------------------------- the status


def run_status(run_dir: Path, now: float | None = None) -> dict[str, Any]:
    """Everything ``wake2vec status`` shows about one run directory, as plain JSON-able data."""
    run_dir = require_run_dir(Path(run_dir))
    now = time.time() if now is None else now
    manifest = read_json(run_dir / MANIFEST) or {}
    events = read_jsonl(run_dir / EVENTS)
    folders = phase_dirs(run_dir)
    writer = writer_state(run_dir)
    recorded = manifest.get("status") or ("starting" if writer["alive"] else "unknown")
    status = recorded
    if recorded in ("running", "starting") and not writer["alive"]:
        status = "stopped"  # the manifest says running but no process holds the lock: it died
    records = manifest.get("phases") or {}

    phases = []
    for index, plan in enumerate(planned_phases(manifest, events, folders)):
        name = plan["name"]
        folder = folders.get(name)
        rows = read_jsonl(folder / HISTORY) if folder else []
        summary = history_summary(rows, plan.get("total_steps"))
        record = records.get(name) or {}
        phase_status = record.get("status") or ("started" if folder else "pending")
        if phase_status == "running" and not writer["alive"]:
            phase_status = "stopped"
        evaluation = record.get("evaluation") or {}
        if summary["val_loss"] is None and evaluation.get("val_loss") is not None:
            summary.update(
                val_loss=evaluation.get("val_loss"),
                bits_per_byte=evaluation.get("bits_per_byte"),
                perplexity=evaluation.get("perplexity"),
            )
        phases.append(
            {
                "index": index + 1,
                "name": name,
                "strategy": plan.get("strategy"),
                "status": phase_status,
                "folder": str(folder) if folder else None,
                **summary,
                "checkpoints": checkpoint_inventory(folder, now) if folder else [],
                "history_age_s": age_s(folder / HISTORY, now) if folder else None,
            }
        )

    current = _current_phase(phases, status)
    eta = None
    if current is not None and writer["alive"] and current["seconds_per_step"] is not None:
        total = current["total_steps"]
        if isinstance(total, int) and total >= current["step"]:
            eta = (total - current["step"]) * current["seconds_per_step"]
    if current is not None:
        current = dict(current, eta_s=eta)

    checkpoints = [c for p in phases for c in p["checkpoints"] if c["valid"]]
    newest = _newest(checkpoints)
    evals = [p for p in phases if p["best_val_loss"] is not None]
    return {
        "run_dir": str(run_dir),
        "name": dig(manifest, "recipe", "run", "name"),
        "status": status,
        "manifest_status": manifest.get("status"),
        "error": manifest.get("error"),
        "writer": writer,
        "current_phase": current,
        "phases": phases,
        "best_val": min(
            (
                {"phase": p["name"], "val_loss": p["best_val_loss"], "step": p["best_val_step"]}
                for p in evals
            ),
            key=lambda b: b["val_loss"],
            default=None,
        ),
        "ages_s": {
            "manifest": age_s(run_dir / MANIFEST, now),
            "events": age_s(run_dir / EVENTS, now),
            "history": current["history_age_s"] if current else None,
            "last_checkpoint": newest["age_s"] if newest else None,
            "report": age_s(run_dir / REPORT, now),
        },
        "problems": [
            f"{p['name']}/{c['name']}: {c['problem']}"
            for p in phases
            for c in p["checkpoints"]
            if not c["valid"]
        ],
    }


def _newest(checkpoints: list[dict[str, Any]]) -> dict[str, Any] | None:
    aged = [c for c in checkpoints if c["age_s"] is not None]
    return min(aged, key=lambda c: c["age_s"]) if aged else None


def _current_phase(phases: list[dict[str, Any]], status: str) -> dict[str, Any] | None:
    """The phase running now (or where a stopped run stood); the last one for a finished run."""
    for phase in phases:
        if phase["status"] in ("running", "stopped", "failed", "interrupted"):
            return phase
    if status == "completed":
        return phases[-1] if phases else None
    for phase in phases:
        if phase["status"] != "completed":
            return phase
    return phases[-1] if phases else None


# ----------------------------------------------------------------------------- comparison


def tokenizer_fingerprint(run_dir: Path, manifest: dict[str, Any]) -> str:
    """A short hash identifying the tokenizer a run's losses were measured with: the saved
    (injected) ``tokenizer/`` files, else the base model plus the number of new ids."""
    import hashlib

    sha = hashlib.sha256()
    folder = run_dir / "tokenizer"
    files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    preferred = [p for p in files if p.name == "tokenizer.json"] or files
    if preferred:
        for path in preferred:
            sha.update(path.name.encode() + b"\0" + path.read_bytes())
    else:
        model = manifest.get("model") or {}
        facts = [
            model.get("family"),
            model.get("source"),
            model.get("tokenizer_entries"),
            dig(manifest, "injection", "new_ids"),
        ]
        sha.update(json.dumps(facts, default=str).encode())
    return sha.hexdigest()[:12]


# (label, path into metrics.json "analysis"): headline geometry numbers, after the phase
GEOMETRY = (
    ("isotropy mu (new rows)", ("isotropy", "after", "new", "mu")),
    ("IsoScore (new rows)", ("isotropy", "after", "new", "isoscore")),
    ("norm Cohen's d (new vs base)", ("norms", "after", "cohens_d")),
    ("drift: mean cosine to before (new rows)", ("drift", "new", "mean")),
    ("neighbour overlap before/after", ("neighbours", "overlap")),
    ("PIP loss, relative (new rows)", ("pip-loss", "new", "relative")),
    ("PCA dims for 90% (new rows)", ("pca-dims", "after", "new", "dims", "0.9")),
)

# label, key in a phase's generation "mean", per token (so tied to the tokenizer)
GENERATION = (
    ("generated: new-token share", "new_token_share", True),
    ("generated: words unknown to English", "unknown_word_share", False),
    ("generated: lexicon-word share", "lexicon_share", False),
    ("generated: lexicon recall", "lexicon_recall", False),
    ("generated: distinct-2", "distinct_2", False),
    ("generated: repeated trigrams", "repetition_rate", False),
)

INJECTION = (
    ("words added", ("added", "count")),
    ("new ids", ("added", "ids")),
    ("trainable rows", ("added", "trainable_rows")),
    ("words skipped", ("skipped", "count")),
    ("coverage of lexicon occurrences", ("coverage",)),
    ("spurious hits", ("spurious_hits", "count")),
    ("dead words", ("dead_tokens", "count")),
    ("dead word share", ("dead_tokens", "share")),
    ("round trip exact", ("round_trip", "exact")),
    ("tokens after / before", ("token_ratio",)),
)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """The facts ``wake2vec compare`` puts side by side for one run."""
    run_dir = require_run_dir(Path(run_dir))
    manifest = read_json(run_dir / MANIFEST) or {}
    injection = read_json(run_dir / "injection.json") or {}
    model = manifest.get("model") or {}
    base_entries = model.get("tokenizer_entries")
    new_ids = dig(manifest, "injection", "new_ids")
    if new_ids is None:
        new_ids = dig(injection, "embedding", "new_ids")
    after = dig(injection, "embedding", "tokenizer_entries_after")
    if after is None and isinstance(base_entries, int) and isinstance(new_ids, int):
        after = base_entries + new_ids
    folders = phase_dirs(run_dir)
    phases = {}
    for plan in planned_phases(manifest, read_jsonl(run_dir / EVENTS), folders):
        name = plan["name"]
        record = dig(manifest, "phases", name) or {}
        metrics = read_json(folders[name] / "metrics.json", attempts=1) if name in folders else None
        evaluation = record.get("evaluation") or dig(metrics, "evaluation") or {}
        phases[name] = {
            "status": record.get("status", "pending"),
            "val_loss": evaluation.get("val_loss"),
            "perplexity": evaluation.get("perplexity"),
            "bits_per_byte": evaluation.get("bits_per_byte"),
            "uniform_loss": evaluation.get("uniform_loss"),
            "geometry": {label: dig(metrics, "analysis", *path) for label, path in GEOMETRY},
            "generation": {key: dig(metrics, "generation", "mean", key) for _, key, _ in GENERATION},
        }
    return {
        "run_dir": str(run_dir),
        "name": dig(manifest, "recipe", "run", "name") or run_dir.name,
        "status": manifest.get("status"),
        "family": model.get("family"),
        "source": model.get("source"),
        "tied": model.get("tied"),
        "base_tokenizer_entries": base_entries,
        "tokenizer_entries": after,
        "new_ids": new_ids,
        "new_share": new_ids / after if isinstance(new_ids, int) and after else None,
        "tokenizer_fingerprint": tokenizer_fingerprint(run_dir, manifest),
        "tokenizer_kind": tokenizer_kind(run_dir),
        "phases": phases,
        "injection": {label: dig(injection, *path) for label, path in INJECTION},
    }


def tokenizer_kind(run_dir: Path) -> str | None:
    """"byte-level BPE", "SentencePiece-style BPE" and the like, read from the run's saved
    fast tokenizer (tokenizer/tokenizer.json); None when there is none."""
    data = read_json(run_dir / "tokenizer" / "tokenizer.json", attempts=1)
    if not isinstance(data, dict):
        return None
    text = json.dumps([data.get(k) for k in ("normalizer", "pre_tokenizer", "decoder")])
    model = dig(data, "model", "type") or "unknown model"
    if '"ByteLevel"' in text:
        return f"byte-level {model}"
    if '"Metaspace"' in text or "\u2581" in text or "▁" in text:
        return f"SentencePiece-style {model}"
    return str(model)


NOT_COMPARABLE = (
    "not comparable across these runs: their tokenizers differ, so a token is not "
    "the same unit; compare bits per byte"
)


def compare_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """Runs side by side: ``rows`` of ``{section, label, values (one per run), comparable,
    note}``; per-token numbers are marked not comparable when the tokenizers differ."""
    runs = [run_summary(Path(p)) for p in run_dirs]
    labels = [r["name"] for r in runs]
    if len(set(labels)) < len(labels):  # same run name twice: tell them apart by folder
        labels = [f"{r['name']} ({Path(r['run_dir']).name})" for r in runs]
    same_tokenizer = len({r["tokenizer_fingerprint"] for r in runs}) <= 1
    rows: list[dict[str, Any]] = []

    def add(section: str, label: str, values: list[Any], per_token: bool = False) -> None:
        if all(v is None for v in values):
            return
        comparable = same_tokenizer or not per_token
        rows.append(
            {
                "section": section,
                "label": label,
                "values": values,
                "comparable": comparable,
                "note": None if comparable else NOT_COMPARABLE,
            }
        )

    add("run", "status", [r["status"] for r in runs])
    add("run", "folder", [r["run_dir"] for r in runs])
    for key, label in (
        ("family", "model family"),
        ("source", "model source"),
        ("tied", "tied head"),
        ("base_tokenizer_entries", "base tokenizer entries"),
        ("tokenizer_entries", "tokenizer entries after injection"),
        ("new_ids", "new ids"),
        ("new_share", "new ids' share of the vocabulary"),
        ("tokenizer_fingerprint", "tokenizer fingerprint"),
        ("tokenizer_kind", "tokenizer kind"),
    ):
        add("model", label, [r[key] for r in runs])
    for label, _ in INJECTION:
        add("injection", label, [r["injection"][label] for r in runs])
    names: list[str] = []
    for run in runs:
        names += [n for n in run["phases"] if n not in names]
    for name in names:
        section = f"phase {name}"
        phase = [r["phases"].get(name) or {} for r in runs]
        add(section, "status", [p.get("status") for p in phase])
        add(section, "val loss (nats/token)", [p.get("val_loss") for p in phase], per_token=True)
        add(section, "perplexity (per token)", [p.get("perplexity") for p in phase], per_token=True)
        add(
            section,
            "uniform-guess loss ln|V|",
            [p.get("uniform_loss") for p in phase],
            per_token=True,
        )
        add(section, "bits per byte", [p.get("bits_per_byte") for p in phase])
        for label, _ in GEOMETRY:
            add(section, label, [dig(p, "geometry", label) for p in phase])
        for label, key, per_token in GENERATION:
            add(section, label, [dig(p, "generation", key) for p in phase], per_token=per_token)
    return {"runs": runs, "labels": labels, "same_tokenizer": same_tokenizer, "rows": rows}
