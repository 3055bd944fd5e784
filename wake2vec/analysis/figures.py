"""Report figures as PNG bytes: the six-panel geometry figure of a phase (the training curves
are in :mod:`wake2vec.analysis.curves`).

matplotlib is imported inside the functions and drives the Agg canvas directly (no pyplot, no
global figure state), so figures are deterministic and safe to make from any thread. A panel
whose metric was not in the recipe reads "not measured"; one whose data it cannot read says so
instead of failing the report.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

BASE, NEW, ALL = "#4c72b0", "#dd8452", "#55a868"  # row-set colours, used the same in every panel
SET_COLOURS = {"base": BASE, "new": NEW, "all": ALL}
PHASE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def _figure(width: float, height: float, **margins: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)  # fixed margins: constrained layout is slow
    fig.subplots_adjust(**margins)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version: same bytes
    return buf.getvalue()


def _note(ax: Axes, title: str, text: str) -> None:
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.text(
        0.5, 0.5, text, ha="center", va="center", color="#777", transform=ax.transAxes, wrap=True
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fmt(value: Any, spec: str = ".3g") -> str:
    number = _number(value)
    return "n/a" if number is None else format(number, spec)


def _density(counts: Sequence[float], edges: Sequence[float]) -> list[float]:
    """Counts scaled so the histogram integrates to 1 (sets of different sizes compare)."""
    total = sum(counts)
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    if total <= 0:
        return [0.0 for _ in counts]
    return [c / (total * w) if w > 0 else 0.0 for c, w in zip(counts, widths, strict=True)]


def _crop(ax: Axes, edges: Sequence[float], *count_lists: Sequence[float], pad: int = 1) -> None:
    """Limit the x axis to the bins that hold anything (cosine histograms span [-1, 1])."""
    used = [i for counts in count_lists for i, c in enumerate(counts) if c]
    if used:
        lo, hi = max(0, min(used) - pad), min(len(edges) - 1, max(used) + 1 + pad)
        ax.set_xlim(edges[lo], edges[hi])


def _stairs(
    ax: Axes, hist: dict[str, Any] | None, counts: Any, label: str, colour: str, style: str = "-"
) -> list[float]:
    edges = (hist or {}).get("bin_edges")
    if not edges or not counts:
        return []
    ax.stairs(
        _density(counts, edges), edges, label=label, color=colour, linestyle=style, linewidth=1.4
    )
    return list(counts)


# ----------------------------------------------------------------------------- the six panels


def _norms(ax: Axes, norms: dict[str, Any]) -> None:
    hist = norms.get("histogram")
    d = (
        f"Cohen's d new vs base: {_fmt(norms['before'].get('cohens_d'), '.2f')} before, "
        f"{_fmt(norms['after'].get('cohens_d'), '.2f')} after"
    )
    if hist:
        for key, style in (("before", "--"), ("after", "-")):
            for which in ("base", "new"):
                _stairs(
                    ax,
                    hist,
                    hist.get(key, {}).get(which),
                    f"{which} {key}",
                    SET_COLOURS[which],
                    style,
                )
        ax.set_ylabel("density")
    else:  # summary only: mean ± std with the min-max range
        for i, key in enumerate(("before", "after")):
            for j, which in enumerate(("base", "new")):
                s = norms[key].get(which) or {}
                if _number(s.get("mean")) is None:
                    continue
                x = i + (j - 0.5) * 0.3
                lo, hi = _number(s.get("min")), _number(s.get("max"))
                if lo is not None and hi is not None:
                    ax.vlines(x, lo, hi, color=SET_COLOURS[which], alpha=0.4, linewidth=6)
                ax.errorbar(
                    x,
                    s["mean"],
                    yerr=_number(s.get("std")) or 0.0,
                    fmt="o",
                    color=SET_COLOURS[which],
                    capsize=4,
                    label=which if i == 0 else None,
                )
        ax.set_xticks([0, 1], ["before", "after"])
        ax.set_ylabel("row norm")
    ax.set_xlabel("row norm" if hist else "")
    ax.set_title("Row norms")
    ax.text(0.01, 0.99, d, transform=ax.transAxes, va="top", fontsize=8)
    ax.legend(loc="upper right")


def _bars(
    ax: Axes,
    groups: Sequence[str],
    series: list[tuple[str, list[float | None], str, float]],
) -> None:
    width = 0.8 / max(1, len(series))
    for k, (label, values, colour, alpha) in enumerate(series):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=label, color=colour, alpha=alpha)
        for bar, v in zip(bars, values, strict=True):
            text = "n/a" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_xticks(range(len(groups)), [f"{g} rows" for g in groups])


def _isotropy(ax: Axes, iso: dict[str, Any]) -> None:
    series = []
    for measure, name, colour in (("mu", "Mu et al.", "#4c72b0"), ("isoscore", "IsoScore", ALL)):
        for key, alpha in (("before", 0.45), ("after", 1.0)):
            values = [
                _number((iso.get(key, {}).get(w) or {}).get(measure))
                for w in ("base", "new", "all")
            ]
            series.append((f"{name} {key}", values, colour, alpha))
    _bars(ax, ("base", "new", "all"), series)
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("isotropy (1 = isotropic)")
    ax.set_title("Isotropy")
    ax.legend(loc="upper center", ncol=2)


def _drift(ax: Axes, drift: dict[str, Any]) -> None:
    base, new = drift.get("base") or {}, drift.get("new") or {}
    drawn = []
    if new.get("histogram"):
        drawn += _stairs(ax, new["histogram"], new["histogram"].get("counts"), "new rows", NEW)
    if base.get("histogram") and base.get("changed_rows"):
        drawn += _stairs(ax, base["histogram"], base["histogram"].get("counts"), "base rows", BASE)
    if drawn:
        ax.set_xlabel("cosine(before, after) per row")
        ax.set_ylabel("density")
    else:
        _bars(
            ax,
            ("base", "new"),
            [
                ("mean cosine", [_number(base.get("mean")), _number(new.get("mean"))], NEW, 1.0),
                ("min cosine", [_number(base.get("min")), _number(new.get("min"))], NEW, 0.45),
            ],
        )
        ax.set_ylabel("cosine(before, after)")
    lines = [
        f"base rows: mean {_fmt(base.get('mean'), '.4f')}, "
        f"{base.get('changed_rows', 'n/a')} of {base.get('rows', 'n/a')} changed",
        f"new rows: mean {_fmt(new.get('mean'), '.3f')}, min {_fmt(new.get('min'), '.3f')}",
    ]
    ax.text(0.01, 0.99, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=8)
    ax.set_title("Drift (before → after)")
    if drawn:
        ax.legend(loc="center left")


def _neighbours(ax: Axes, nb: dict[str, Any]) -> None:
    nearest = nb.get("nearest_cosine") or {}
    overlap = _number(nb.get("overlap"))
    head = (
        f"top-{nb.get('k', '?')} overlap before/after: "
        + ("n/a" if overlap is None else f"{overlap:.1%}")
        + f" ({nb.get('queries', 0)} new tokens)"
    )
    drawn: list[Sequence[float]] = []
    edges: Sequence[float] = []
    for key, style in (("before", "--"), ("after", "-")):
        hist = nearest.get(key)
        if hist and hist.get("counts"):
            drawn.append(
                _stairs(
                    ax,
                    hist,
                    hist["counts"],
                    f"{key} (mean {_fmt(hist.get('mean'), '.2f')})",
                    NEW,
                    style,
                )
            )
            edges = hist["bin_edges"]
    if drawn:
        _crop(ax, edges, *drawn)
        ax.set_xlabel("cosine to the nearest base token")
        ax.set_ylabel("density")
        ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.93))
    else:
        ax.bar([0], [overlap or 0.0], color=NEW)
        ax.set_xticks([0], ["overlap"])
        ax.set_ylim(0, 1.1)
    ax.text(0.01, 0.99, head, transform=ax.transAxes, va="top", fontsize=8)
    ax.set_title("Nearest base neighbours of new tokens")


def _pca(ax: Axes, pca: dict[str, Any]) -> None:
    after = pca.get("after") or {}
    curves = {w: (after.get(w) or {}).get("cumulative") for w in ("base", "new", "all")}
    if any(curves.values()):  # cumulative explained variance, when the metric stores it
        for which, values in curves.items():
            if values:
                ax.plot(range(1, len(values) + 1), values, color=SET_COLOURS[which], label=which)
        for t in pca.get("thresholds") or []:
            ax.axhline(t, color="#999", linestyle=":", linewidth=1)
        ax.set_xlabel("components")
        ax.set_ylabel("cumulative variance share")
        ax.legend(loc="lower right")
    else:
        series = []
        for t, colour in zip(
            pca.get("thresholds") or [0.9, 0.95], ("#8172b3", "#c44e52"), strict=False
        ):
            key = f"{t:g}"
            for snap, alpha in (("before", 0.45), ("after", 1.0)):
                dims = [
                    ((pca.get(snap) or {}).get(w) or {}).get("dims") or {}
                    for w in ("base", "new", "all")
                ]
                series.append((f"{t:.0%} {snap}", [d.get(key) for d in dims], colour, alpha))
        _bars(ax, ("base", "new", "all"), series)
        hidden = _number(after.get("hidden"))
        if hidden:
            ax.axhline(hidden, color="#999", linestyle=":", linewidth=1)
            ax.set_ylim(0, hidden * 1.3)
            ax.annotate(
                f"hidden size {hidden:g}",
                (0.99, hidden),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=7,
                color="#666",
            )
        ax.set_ylabel("principal components")
        ax.legend(loc="upper left", ncol=2)
    ax.set_title("Intrinsic dimension (PCA)")


def _pairwise(ax: Axes, pw: dict[str, Any]) -> None:
    edges = pw.get("bin_edges")
    after, before = pw.get("after") or {}, pw.get("before") or {}
    if "skipped" in after:
        _note(ax, "Pairwise cosines", f"not measured: {after['skipped']}")
        return
    hist = {"bin_edges": edges}
    drawn = []
    for group, colour in (("base_base", BASE), ("new_new", NEW), ("base_new", ALL)):
        stats = after.get(group) or {}
        label = f"{group.replace('_', '-')} (mean {_fmt(stats.get('mean'), '.2f')})"
        drawn.append(_stairs(ax, hist, stats.get("histogram"), label, colour))
    drawn.append(
        _stairs(
            ax, hist, (before.get("new_new") or {}).get("histogram"), "new-new before", NEW, "--"
        )
    )
    if edges:
        _crop(ax, edges, *drawn)
    ks_after = after.get("ks_base_new_new") or {}
    ks_before = before.get("ks_base_new_new") or {}
    ax.text(
        0.01,
        0.99,
        f"KS base-base vs new-new: D {_fmt(ks_after.get('statistic'), '.3f')} "
        f"(p {_fmt(ks_after.get('pvalue'), '.2g')}); before D "
        f"{_fmt(ks_before.get('statistic'), '.3f')}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
    )
    ax.set_xlabel("cosine of a random pair")
    ax.set_ylabel("density")
    ax.set_title(f"Pairwise cosines ({pw.get('pairs', '?')} pairs, after)")
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.93))


PANELS: tuple[tuple[str, str, Callable[[Axes, dict[str, Any]], None]], ...] = (
    ("norms", "Row norms", _norms),
    ("isotropy", "Isotropy", _isotropy),
    ("drift", "Drift (before → after)", _drift),
    ("neighbours", "Nearest base neighbours of new tokens", _neighbours),
    ("pca-dims", "Intrinsic dimension (PCA)", _pca),
    ("pairwise-cosine", "Pairwise cosines", _pairwise),
)


def geometry_figure(analysis: dict[str, Any] | None, title: str = "") -> bytes:
    """The six-panel geometry figure of one phase, from its metrics.json ``analysis``: norms,
    isotropy, drift, neighbours, PCA dimensions, pairwise cosines (before and after the phase).
    Returns PNG bytes."""
    import matplotlib

    analysis = analysis or {}
    with matplotlib.rc_context(STYLE):
        fig = _figure(
            15, 8.4, left=0.045, right=0.99, top=0.92, bottom=0.065, wspace=0.2, hspace=0.3
        )
        axes = fig.subplots(2, 3).ravel()
        for ax, (key, panel_title, draw) in zip(axes, PANELS, strict=True):
            data = analysis.get(key)
            if not isinstance(data, dict):
                _note(ax, panel_title, f"not measured\n(add the {key!r} metric to the recipe)")
                continue
            try:
                draw(ax, data)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
                log.warning("geometry figure: cannot draw %s: %s", key, err)
                ax.clear()
                _note(ax, panel_title, f"could not draw: {type(err).__name__}")
        if title:
            fig.suptitle(title, fontsize=12, fontweight="bold")
        return _png(fig)


