"""Run and phase descriptions passed to lifecycle hooks, and the emitter phases call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """A run as lifecycle hooks see it."""

    name: str
    run_dir: Path
    recipe: dict[str, Any]
    seed: int
    resumed: bool = False


@dataclass(frozen=True)
class PhaseInfo:
    """A phase as lifecycle hooks see it."""

    index: int
    name: str
    strategy: str
    out_dir: Path
    total_steps: int


@dataclass
class PhaseEvents:
    """Bound to one run and phase; a phase strategy reports progress through it.

    ``hook`` is the plugin manager's hook relay. Every call is also appended to the run's
    ``events.jsonl`` through the built-in observer plugin.
    """

    hook: Any
    run: RunInfo
    phase: PhaseInfo
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        self.evaluations.append({"step": step, **metrics})
        self.hook.wake2vec_evaluation(run=self.run, phase=self.phase, step=step, metrics=metrics)

    def checkpoint_saved(self, step: int, path: Path) -> None:
        self.hook.wake2vec_checkpoint_saved(run=self.run, phase=self.phase, step=step, path=path)
