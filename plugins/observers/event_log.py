"""Built-in observer: appends every lifecycle event to ``events.jsonl`` in the run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from wake2vec import hookimpl

EVENTS_FILE = "events.jsonl"


def _append(run_dir: Path, event: str, **fields: Any) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, **fields}
    with (run_dir / EVENTS_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


@hookimpl
def wake2vec_run_start(run):
    _append(run.run_dir, "run_start", name=run.name, seed=run.seed, resumed=run.resumed)


@hookimpl
def wake2vec_run_end(run, status, error):
    _append(run.run_dir, "run_end", status=status, error=error)


@hookimpl
def wake2vec_phase_start(run, phase):
    _append(run.run_dir, "phase_start", phase=phase.name, strategy=phase.strategy,
            total_steps=phase.total_steps)


@hookimpl
def wake2vec_phase_end(run, phase, metrics):
    _append(run.run_dir, "phase_end", phase=phase.name, metrics=metrics)


@hookimpl
def wake2vec_evaluation(run, phase, step, metrics):
    _append(run.run_dir, "evaluation", phase=phase.name, step=step, metrics=metrics)


@hookimpl
def wake2vec_checkpoint_saved(run, phase, step, path):
    _append(run.run_dir, "checkpoint_saved", phase=phase.name, step=step, path=str(path))
