"""Training-curve figures as PNG bytes: train and validation loss and bits per byte of every
phase on one step axis, and the comparison of a phase's branches (style and helpers shared
with :mod:`wake2vec.analysis.figures`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wake2vec.analysis.figures import PHASE_COLOURS, STYLE, _figure, _number, _png


def _trailing_mean(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curves_figure(curves: Sequence[dict[str, Any]], uniform_loss: float | None = None,
                  baselines: dict[str, Any] | None = None) -> bytes:
    """Train loss, validation loss and bits per byte against step, every phase one after
    another on one step axis (dotted lines mark phase boundaries). ``curves``: one dict per
    phase, ``{"name", "offset", "train": {"step", "train_loss"}, "eval": {"step", "val_loss",
    "bits_per_byte"}}`` with steps local to the phase (see ``wake2vec.analysis.report_data.curves``).
    ``baselines`` (a manifest's) draws reference lines: the injected model at step 0 on the
    validation and bits-per-byte panels, the untouched model on bits per byte (its own
    tokenizer: its loss per token does not compare). Returns PNG bytes."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig = _figure(15, 4.2, left=0.045, right=0.99, top=0.92, bottom=0.13, wspace=0.2)
        ax_train, ax_val, ax_bpb = fig.subplots(1, 3, sharex=True)
        drawn = {"train": False, "val": False, "bpb": False}
        for i, phase in enumerate(curves):
            colour = PHASE_COLOURS[i % len(PHASE_COLOURS)]
            offset = phase.get("offset", 0)
            train, ev = phase.get("train") or {}, phase.get("eval") or {}
            steps = [s + offset for s in train.get("step", [])]
            losses = train.get("train_loss", [])
            if steps:
                ax_train.plot(steps, losses, color=colour, alpha=0.3, linewidth=0.8)
                window = max(1, len(losses) // 25)
                ax_train.plot(
                    steps,
                    _trailing_mean(losses, window),
                    color=colour,
                    linewidth=1.6,
                    label=phase["name"],
                )
                drawn["train"] = True
            steps = [s + offset for s in ev.get("step", [])]
            for ax, key, flag in ((ax_val, "val_loss", "val"), (ax_bpb, "bits_per_byte", "bpb")):
                pts = [
                    (s, v)
                    for s, v in zip(steps, ev.get(key, []), strict=False)
                    if _number(v) is not None
                ]
                if pts:
                    ax.plot(
                        *zip(*pts, strict=True),
                        marker="o",
                        markersize=3.5,
                        color=colour,
                        label=phase["name"],
                    )
                    drawn[flag] = True
        references = [(ax_val, "injected", "val_loss", "injected, step 0", "#8172b3"),
                      (ax_bpb, "injected", "bits_per_byte", "injected, step 0", "#8172b3"),
                      (ax_bpb, "base", "bits_per_byte", "untouched model", "#333333")]
        for ax, which, key, label, colour in references:
            value = _number(((baselines or {}).get(which) or {}).get(key))
            if value is not None:
                ax.axhline(value, color=colour, linestyle="-.", linewidth=1,
                           label=f"{label}: {value:.3f}")
                drawn["val" if ax is ax_val else "bpb"] = True
        boundaries = [p.get("offset", 0) for p in curves[1:]]
        for ax, flag, title, ylabel in (
            (ax_train, "train", "Train loss (trailing mean; raw faint)", "nats/token"),
            (ax_val, "val", "Validation loss", "nats/token"),
            (ax_bpb, "bpb", "Bits per byte (compares across tokenizers)", "bits/byte"),
        ):
            for b in boundaries:
                ax.axvline(b, color="#999", linestyle=":", linewidth=1)
            if flag != "bpb" and _number(uniform_loss) is not None and drawn[flag]:
                ax.axhline(
                    uniform_loss,
                    color="#c44e52",
                    linestyle="--",
                    linewidth=1,
                    label=f"uniform guess ln|V| = {uniform_loss:.2f}",
                )
            if not drawn[flag]:
                ax.text(
                    0.5,
                    0.5,
                    "no data",
                    ha="center",
                    va="center",
                    color="#777",
                    transform=ax.transAxes,
                )
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.set_xlabel("step (phases one after another)")
            if drawn[flag]:
                ax.legend(loc="best")
        return _png(fig)


def branches_figure(group: dict[str, Any]) -> bytes:
    """Validation loss and bits per byte of the phases that continue one phase (its branches),
    each against its own steps, so where each starts and how far it gets read side by side.
    ``group``: ``{"parent", "rows": [{"name", "from", "eval": {"step", "val_loss",
    "bits_per_byte"}}]}`` (see ``wake2vec.analysis.report_data.branch_groups``). Returns PNG bytes."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig = _figure(11, 3.8, left=0.07, right=0.99, top=0.86, bottom=0.15, wspace=0.22)
        axes = fig.subplots(1, 2, sharex=True)
        for i, row in enumerate(group["rows"]):
            colour = PHASE_COLOURS[i % len(PHASE_COLOURS)]
            ev = row.get("eval") or {}
            for ax, key in zip(axes, ("val_loss", "bits_per_byte"), strict=True):
                pts = [(s, v) for s, v in zip(ev.get("step", []), ev.get(key, []), strict=False)
                       if _number(v) is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", markersize=3.5, color=colour,
                            label=f"{row['name']} (from {row['from']})")
        for ax, title, unit in ((axes[0], "Validation loss", "nats/token"),
                                (axes[1], "Bits per byte", "bits/byte")):
            ax.set_title(title)
            ax.set_ylabel(unit)
            ax.set_xlabel("step of the branch")
            if ax.lines:
                ax.legend(loc="best")
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", color="#777",
                        transform=ax.transAxes)
        fig.suptitle(f"Branches from phase {group['parent']}", fontsize=11, fontweight="bold")
        return _png(fig)
