"""``wake2vec status``: where runs stand, read from their directories while they train or after."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click


@click.command("status")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (a JSON list).")
def status(run_dirs: tuple[Path, ...], watch: bool, interval: float, as_json: bool) -> None:
    """Show the progress of each RUN_DIR: phase and step, losses, checkpoints, ETA, liveness.

    Safe to use on a run another process is writing. Exits 2 when a path is not a run directory.
    """
    from wake2vec.rundir.reading import require_run_dirs
    from wake2vec.rundir.status import run_status

    require_run_dirs(run_dirs)

    def show() -> None:
        results = [run_status(path) for path in run_dirs]
        if as_json:
            click.echo(json.dumps(results, indent=2, default=str))
        else:
            click.echo("\n\n".join(render(r) for r in results))

    if not watch:
        show()
        return
    clear = sys.stdout.isatty() and not as_json
    try:
        while True:
            if clear:
                click.clear()
            show()
            if clear:
                click.echo(f"\n(refreshing every {interval:g} s; Ctrl-C to stop)")
            time.sleep(interval)
    except KeyboardInterrupt:
        return


# ----------------------------------------------------------------------------- text rendering


def fmt_num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def render(result: dict[str, Any]) -> str:
    """Human-readable lines for one run's status."""
    writer = result["writer"]
    if writer["alive"]:
        who = f"writer pid {writer['pid']} alive"
    elif writer["pid"] is not None:
        who = f"no process writing (last pid {writer['pid']})"
    else:
        who = "no process writing"
    status = result["status"]
    if status == "stopped":
        status = (
            "stopped (the manifest says running, but its process is gone: resume with --resume)"
        )
    lines = [f"{result['run_dir']}  [{result['name'] or '?'}]", f"  status: {status}; {who}"]
    if result.get("error"):
        lines.append(f"  error: {result['error']}")
    phases = result["phases"]
    current = result["current_phase"]
    if current is not None:
        total = current["total_steps"]
        share = (
            f" ({100 * current['step'] / total:.0f}%)" if isinstance(total, int) and total else ""
        )
        eta = ""
        if current.get("eta_s") is not None:
            eta = (
                f"  ETA {fmt_duration(current['eta_s'])} at "
                f"{current['seconds_per_step']:.3g} s/step"
            )
        lines.append(
            f"  phase {current['name']} ({current['index']}/{len(phases)}, "
            f"{current['strategy'] or '?'}, {current['status']}): step {current['step']}/"
            f"{fmt_num(total)}{share}{eta}"
        )
        lines.append(
            f"  train loss {fmt_num(current['train_loss'])}"
            f" | val loss {fmt_num(current['val_loss'])} nats/token, "
            f"{fmt_num(current['bits_per_byte'])} bits/byte (step {fmt_num(current['val_step'])})"
            f" | best val {fmt_num(current['best_val_loss'])} (step "
            f"{fmt_num(current['best_val_step'])})"
        )
    baselines = result.get("baselines") or {}
    if baselines:
        shown = [f"{label} {fmt_num((baselines.get(key) or {}).get('bits_per_byte'))} bpb"
                 for key, label in (("base", "untouched model"), ("injected", "injected at step 0"))
                 if key in baselines]
        lines.append("  baselines: " + ", ".join(shown))
    from wake2vec.training.baselines import against

    lines.append("  phases:")
    for phase in phases:
        versus = against(phase["bits_per_byte"], baselines)
        lines.append(
            f"    {phase['index']:>2}. {phase['name']:<12} {phase['status']:<10} step "
            f"{phase['step']}/{fmt_num(phase['total_steps'])}  val {fmt_num(phase['val_loss'])}  "
            f"bpb {fmt_num(phase['bits_per_byte'])}"
            + (f" ({versus['bits_per_byte']:+.3f} vs untouched)" if versus else "")
            + (f"  regime {phase['regime']}" if phase.get("regime") else "")
        )
        if phase.get("fried_at"):
            lines.append(f"          WARNING: training and validation loss rose together at step "
                         f"{', '.join(str(s) for s in phase['fried_at'])} (fried: the learning "
                         "rate may be too high)")
        if phase.get("peak_memory"):
            from wake2vec.training.memory import describe

            peak = phase["peak_memory"]
            lines.append(f"          peak memory: training {describe(peak.get('training'))}; "
                         f"analysis {describe(peak.get('analysis'))}")
        for ckpt in phase["checkpoints"]:
            state = "ok" if ckpt["valid"] else ckpt["problem"]
            val = f", val {fmt_num(ckpt['val_loss'])}" if ckpt["val_loss"] is not None else ""
            lines.append(
                f"          checkpoint {ckpt['name']}: {state}{val}, "
                f"{fmt_duration(ckpt['age_s'])} old"
            )
    ages = result["ages_s"]
    lines.append(
        "  ages: " + ", ".join(f"{k.replace('_', ' ')} {fmt_duration(v)}" for k, v in ages.items())
    )
    if result["problems"]:
        lines.append(f"  problems ({len(result['problems'])}):")
        lines += [f"    {p}" for p in result["problems"]]
    return "\n".join(lines)
