"""The status of a run directory, finished or still being written, without torch: its writer's
liveness, checkpoint inventory, each phase's progress and an estimate of the time left."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from wake2vec.rundir.directory import LOCK, MANIFEST
from wake2vec.rundir.reading import age_s, dig, read_json, read_jsonl, require_run_dir
from wake2vec.training.checkpoint import _PREFIX, list_checkpoints

EVENTS = "events.jsonl"
HISTORY = "history.jsonl"
REPORT = "report.html"
# the files save_checkpoint writes; a checkpoint missing any of them cannot be resumed from
CHECKPOINT_TENSORS = ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors")
CHECKPOINT_JSON = ("state.json", "optimizer.json")
ETA_WINDOW = 20  # train rows used to estimate the time per step


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
        "regime": None,
        "fried_at": [],  # steps whose evaluation saw training and validation loss rise together
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
            regime=last.get("regime"),
            fried_at=[r.get("step") for r in evals if r.get("regime") == "fried"],
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
                "peak_memory": record.get("peak_memory"),
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
        "baselines": manifest.get("baselines") or {},
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


