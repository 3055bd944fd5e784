"""The projection and diagnostics metrics and their figure: known answers on synthetic rows."""

from __future__ import annotations

import io

import pytest
import torch
from wake2vec_plugins.metrics.study import Diagnostics, Projection

from wake2vec.analysis.figures_study import has_study_data, study_figure
from wake2vec.api import MetricContext, Snapshot
from wake2vec.errors import UserInputError
from wake2vec.vocab.morphology import Morphology, word_groups

N_BASE, N_NEW, HIDDEN = 300, 120, 16


def _ctx(change: float = 0.0, last: bool = True, groups: dict[str, str] | None = None) -> MetricContext:
    g = torch.Generator().manual_seed(0)
    before = torch.randn(N_BASE + N_NEW, HIDDEN, generator=g)
    after = before.clone()
    after[N_BASE:] += change * torch.randn(N_NEW, HIDDEN, generator=g)
    base, new = list(range(N_BASE)), list(range(N_BASE, N_BASE + N_NEW))
    words = [f"word{i}" for i in range(N_NEW)]
    return MetricContext(before=Snapshot("before", before, base, new),
                         after=Snapshot("after", after, base, new), seed=5, new_words=words,
                         groups=groups or {}, last_phase=last)


def test_diagnostics_of_unchanged_rows_keep_every_neighbour_and_norm():
    out = Diagnostics(Diagnostics.Params()).compute(_ctx(change=0.0))
    assert out["tokens"] == N_NEW and out["k"] == 5
    assert out["overlap"]["mean"] == 1.0
    assert out["overlap"]["counts"] == [0, 0, 0, 0, 0, N_NEW]
    assert out["norm_change"]["mean"] == 0.0
    assert set(out["points"]["overlap"]) == {1.0}


def test_diagnostics_see_moved_rows():
    out = Diagnostics(Diagnostics.Params(k=3)).compute(_ctx(change=2.0))
    assert out["overlap"]["mean"] < 0.5
    assert sum(out["overlap"]["counts"]) == N_NEW == len(out["points"]["norm_change"])
    assert out["norm_change"]["mean"] > 0  # adding noise lengthens rows on average
    assert sum(out["norm_change"]["counts"]) == N_NEW


def test_diagnostics_sample_is_seeded_and_stated():
    a = Diagnostics(Diagnostics.Params(sample=50)).compute(_ctx(change=1.0))
    b = Diagnostics(Diagnostics.Params(sample=50)).compute(_ctx(change=1.0))
    assert a == b and a["tokens"] == 50 and a["seed"] == 5


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_places_every_sampled_row_and_colours_by_group(method):
    ctx = _ctx(change=1.0, groups={"word0": "-ation", "word1": "portmanteau"})
    params = Projection.Params(method=method, base_sample=100, new_sample=60)
    out = Projection(params).compute(ctx)
    points = out["points"]
    assert len(points["x"]) == len(points["y"]) == 160
    assert points["kind"].count("base") == 100 and points["kind"].count("new") == 60
    assert all(g in ("base", "new", "-ation", "portmanteau") for g in points["group"])
    assert out["method"] == method and out["seed"] == 5
    assert Projection(params).compute(ctx) == out  # seeded
    assert all(isinstance(v, float) for v in points["x"])


def test_projection_separates_a_shifted_new_cloud():
    ctx = _ctx()
    ctx.after.weight[N_BASE:] += 10.0  # the new rows far from the base rows
    out = Projection(Projection.Params(method="pca", base_sample=100, new_sample=100)).compute(ctx)
    xs, kinds = out["points"]["x"], out["points"]["kind"]
    base = [x for x, k in zip(xs, kinds, strict=True) if k == "base"]
    new = [x for x, k in zip(xs, kinds, strict=True) if k == "new"]
    assert max(base) < min(new) or max(new) < min(base)


def test_projection_waits_for_the_last_phase_unless_asked():
    assert "skipped" in Projection(Projection.Params()).compute(_ctx(last=False))
    out = Projection(Projection.Params(method="pca", every_phase=True)).compute(_ctx(last=False))
    assert "points" in out


def test_umap_without_the_package_says_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    with pytest.raises(UserInputError, match="pip install umap-learn"):
        Projection(Projection.Params(method="umap", base_sample=20, new_sample=20)).compute(_ctx())


def test_word_groups_prefer_devices_then_suffix_then_prefix():
    morphology = Morphology(prefixes={"re": ["return"]}, suffixes={"ation": ["nation"]},
                            devices={"portmanteau": ["smoke-ation"]})
    groups = word_groups(["recirculation", "rebrewed", "smoke-ation", "xyz"], morphology)
    assert groups == {"recirculation": "-ation", "rebrewed": "re-", "smoke-ation": "portmanteau"}
    assert word_groups(["a"], None) == {}


def test_study_figure_is_a_png_with_or_without_data():
    from PIL import Image

    ctx = _ctx(change=1.0)
    analysis = {
        "projection": Projection(Projection.Params(method="pca", base_sample=50, new_sample=50)).compute(ctx),
        "diagnostics": Diagnostics(Diagnostics.Params()).compute(ctx),
    }
    assert has_study_data(analysis) and not has_study_data({"norms": {}})
    for data in (analysis, {"diagnostics": analysis["diagnostics"]}, {}):
        image = Image.open(io.BytesIO(study_figure(data, "t")))
        assert image.format == "PNG" and image.width >= 1000
