"""The study figure of a phase: new tokens among base tokens in 2-D, and the three diagnostic plots
(top-k neighbour overlap, norm change, and one against the other), from the ``projection`` and
``diagnostics`` metrics. PNG bytes, drawn like :mod:`wake2vec.figures` (Agg canvas, no pyplot)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from wake2vec.analysis.figures import BASE, NEW, STYLE, _figure, _note, _png

if TYPE_CHECKING:
    from matplotlib.axes import Axes

GROUP_COLOURS = ("#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974")
MAX_GROUPS = len(GROUP_COLOURS) - 1  # the rest share one colour as "other"


def has_study_data(analysis: dict[str, Any] | None) -> bool:
    """Whether ``analysis`` holds a computed projection or diagnostics."""
    analysis = analysis or {}
    projection = analysis.get("projection") or {}
    return bool(projection.get("points")) or bool((analysis.get("diagnostics") or {}).get("tokens"))


def _projection(ax: Axes, projection: dict[str, Any]) -> None:
    points = projection.get("points") or {}
    if not points.get("x"):
        _note(ax, "Projection", "not measured" if not projection else projection.get("skipped", "no points"))
        return
    xs, ys, kinds, groups = points["x"], points["y"], points["kind"], points["group"]
    base = [i for i, k in enumerate(kinds) if k == "base"]
    ax.scatter([xs[i] for i in base], [ys[i] for i in base], s=4, c=BASE, alpha=0.35, linewidths=0,
               label=f"base ({len(base)})")
    new = [i for i, k in enumerate(kinds) if k != "base"]
    counts = Counter(groups[i] for i in new)
    named = [g for g, _ in counts.most_common() if g != "new"][:MAX_GROUPS]
    colour = {g: GROUP_COLOURS[j] for j, g in enumerate(named)}
    for label in [*named, "other"]:
        members = [i for i in new if (groups[i] in colour and groups[i] == label)
                   or (label == "other" and groups[i] not in colour)]
        if not members:
            continue
        name = label if label != "other" or named else "new"
        ax.scatter([xs[i] for i in members], [ys[i] for i in members], s=7, linewidths=0, alpha=0.8,
                   c=colour.get(label, NEW if not named else GROUP_COLOURS[-1]),
                   label=f"{name} ({len(members)})")
    for entry in projection.get("labels") or []:
        i = entry.get("index")
        if isinstance(i, int) and 0 <= i < len(xs) and entry.get("token"):
            ax.annotate(str(entry["token"])[:24], (xs[i], ys[i]), fontsize=6, color="#333",
                        xytext=(2, 2), textcoords="offset points")
    method = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}.get(projection.get("method"), "2-D")
    ax.set_title(f"New tokens among base tokens ({method})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", markerscale=2, fontsize=7)


def _overlap(ax: Axes, diag: dict[str, Any]) -> None:
    overlap = diag.get("overlap") or {}
    if not overlap.get("counts"):
        _note(ax, f"Top-{diag.get('k', 5)} neighbour overlap", "not measured")
        return
    values, counts = overlap["values"], overlap["counts"]
    width = 0.8 / max(1, len(values) - 1)
    ax.bar(values, counts, width=width, color=NEW)
    ax.set_title(f"Top-{diag['k']} base-neighbour overlap per new token")
    ax.set_xlabel(f"share kept between snapshots (mean {overlap.get('mean', float('nan')):.2f})")
    ax.set_ylabel("tokens")


def _norm_change(ax: Axes, diag: dict[str, Any]) -> None:
    change = diag.get("norm_change") or {}
    if not change.get("counts"):
        _note(ax, "Norm change", "not measured")
        return
    edges, counts = change["bin_edges"], change["counts"]
    ax.stairs(counts, edges, fill=True, color=NEW, alpha=0.8)
    ax.axvline(0.0, color="#555", linewidth=0.8)
    ax.set_title("Norm change per new token")
    ax.set_xlabel(f"|after| - |before| (mean {change.get('mean', float('nan')):.3g})")
    ax.set_ylabel("tokens")


def _scatter(ax: Axes, diag: dict[str, Any]) -> None:
    points = diag.get("points") or {}
    if not points.get("overlap"):
        _note(ax, "Norm change against overlap", "not measured")
        return
    ax.scatter(points["overlap"], points["norm_change"], s=5, alpha=0.4, c=NEW, linewidths=0)
    ax.axhline(0.0, color="#555", linewidth=0.8)
    ax.set_title("Norm change against neighbour overlap")
    ax.set_xlabel("top-k overlap")
    ax.set_ylabel("norm change")


def study_figure(analysis: dict[str, Any] | None, title: str = "") -> bytes:
    """The projection (large, left), the overlap and norm-change histograms (right) and their
    scatter (bottom)."""
    import matplotlib

    analysis = analysis or {}
    diag = analysis.get("diagnostics") or {}
    with matplotlib.rc_context(STYLE):
        fig = _figure(12.0, 10.5, left=0.05, right=0.98, top=0.93, bottom=0.06, wspace=0.25, hspace=0.45)
        grid = fig.add_gridspec(3, 3)
        _projection(fig.add_subplot(grid[0:2, 0:2]), analysis.get("projection") or {})
        _overlap(fig.add_subplot(grid[0, 2]), diag)
        _norm_change(fig.add_subplot(grid[1, 2]), diag)
        _scatter(fig.add_subplot(grid[2, :]), diag)
        if title:
            fig.suptitle(title, fontsize=12, fontweight="bold")
        return _png(fig)
