"""Known-answer tests for wake2vec.analysis and the built-in geometry metric plugins."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from wake2vec_plugins.metrics import geometry as G

from wake2vec.analysis import geometry as geo
from wake2vec.analysis import spectrum as spec
from wake2vec.api import MetricContext, Snapshot


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rotation(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(seed), dtype=torch.float64))
    return q


def k_direction_cloud(k: int, d: int, seed: int = 0) -> torch.Tensor:
    """±e_j for j < k, rotated and shifted: exactly k directions of equal variance."""
    eye = torch.eye(d, dtype=torch.float64)[:k]
    x = torch.cat([eye, -eye]) * 3.0
    return x @ rotation(d, seed) + torch.randn(d, generator=gen(seed + 1), dtype=torch.float64)


def ray_cone(n: int = 2000, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Every vector ≈ a·u with a in [5, 15] plus noise of std 0.01: a narrow cone."""
    g = gen(seed)
    u = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    return (torch.rand(n, 1, generator=g) * 10 + 5) * u + 0.01 * torch.randn(n, d, generator=g)


# --------------------------------------------------------------------------- isotropy


def test_isotropic_gaussian_scores_near_one_on_both_measures():
    x = torch.randn(20_000, 16, generator=gen())
    assert spec.isotropy_mu(x) > 0.8
    assert spec.isoscore(x) > 0.95


def test_narrow_cone_scores_near_zero_on_both_measures():
    # The earlier pipeline's centred-unit-vector variant gave 0.997 for a cone.
    x = ray_cone()
    assert spec.isotropy_mu(x) < 0.01
    assert spec.isoscore(x) < 0.05


def test_isoscore_ignores_a_shared_offset_but_mu_does_not():
    # A cone made of one offset plus isotropic noise spreads its *variance* evenly, so
    # IsoScore (which measures variance) calls it isotropic; Mu's measure sees the offset.
    g = gen(3)
    u = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    x = 10 * u + 0.1 * torch.randn(5000, 16, generator=g)
    assert spec.isoscore(x) > 0.9
    assert spec.isotropy_mu(x) < 0.01


def test_mu_is_stable_for_large_norms_and_sign_free():
    x = torch.randn(3000, 8, generator=gen(4)) * 1000.0
    value = spec.isotropy_mu(x)
    assert 0.0 <= value <= 1.0 and math.isfinite(value)
    y = torch.randn(3000, 8, generator=gen(5))
    assert spec.isotropy_mu(y) == pytest.approx(spec.isotropy_mu(-y), rel=1e-9)


def test_mu_matches_a_direct_computation_on_a_small_cloud():
    x = torch.randn(50, 4, generator=gen(6), dtype=torch.float64)
    _, vecs = np.linalg.eigh(x.numpy().T @ x.numpy())
    z = [np.exp(x.numpy() @ (s * vecs[:, i])).sum() for i in range(4) for s in (1, -1)]
    assert spec.isotropy_mu(x) == pytest.approx(min(z) / max(z), rel=1e-9)


@pytest.mark.parametrize("k,d", [(2, 4), (3, 16), (5, 32)])
def test_isoscore_of_k_equal_directions_is_k_minus_1_over_n_minus_1(k, d):
    # The paper's reading of IsoScore: a cloud using k of n dimensions uniformly scores (k-1)/(n-1).
    assert spec.isoscore(k_direction_cloud(k, d)) == pytest.approx((k - 1) / (d - 1), abs=1e-9)


# --------------------------------------------------------------------------- PCA dimensions


@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_pca_dims_counts_exactly_the_directions_with_variance(k):
    # k equal variances: k-1 of them hold (k-1)/k < 0.9 of the variance, so both shares need k.
    assert spec.pca_dims(k_direction_cloud(k, 32)) == {"0.9": k, "0.95": k}


def reference_pca_dims(x: np.ndarray, share: float) -> int:
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    return int(np.searchsorted(np.cumsum(s) / s.sum(), share - 1e-12) + 1)


def test_pca_dims_with_more_hidden_dims_than_samples_reaches_the_true_rank():
    # 40 samples in 64 dimensions: the centred data has rank 39, so 39 is the true ceiling.
    x = torch.randn(40, 64, generator=gen(7), dtype=torch.float64)
    dims = spec.pca_dims(x, (0.5, 0.9, 0.99, 1.0))
    for share, k in dims.items():
        assert k == reference_pca_dims(x.numpy(), float(share))
    assert dims["1"] == 39


def test_pca_dims_is_not_capped_by_a_sample_of_rows():
    x = torch.randn(5000, 64, generator=gen(8))
    dims = spec.pca_dims(x)
    assert dims["0.9"] == reference_pca_dims(x.double().numpy(), 0.9)
    assert dims["0.95"] >= 58  # an isotropic cloud needs nearly every dimension


# --------------------------------------------------------------------------- norms, drift


def rows_with_norms(norms: torch.Tensor, seed: int) -> torch.Tensor:
    theta = torch.rand(norms.numel(), generator=gen(seed)) * 2 * math.pi
    return torch.stack([norms * torch.cos(theta), norms * torch.sin(theta)], dim=1)


def test_norm_stats_cohens_d_recovers_a_known_shift():
    base = rows_with_norms(10 + torch.randn(20_000, generator=gen(1), dtype=torch.float64), 2)
    new = rows_with_norms(10.5 + torch.randn(20_000, generator=gen(3), dtype=torch.float64), 4)
    out = geo.norm_stats(base, new)
    assert out["cohens_d"] == pytest.approx(0.5, abs=0.05)
    assert out["base"]["mean"] == pytest.approx(10.0, abs=0.05)
    assert out["welch_t"]["pvalue"] < 1e-10 and out["mann_whitney_u"]["pvalue"] < 1e-10
    same = geo.norm_stats(base, rows_with_norms(10 + torch.randn(20_000, generator=gen(5)), 6))
    assert abs(same["cohens_d"]) < 0.05 and same["welch_t"]["pvalue"] > 1e-3


def test_drift_is_exactly_one_for_identical_rows():
    x = torch.randn(1000, 64, generator=gen(9)) * 37.0
    cos = geo.drift(x, x.clone())
    assert bool((cos == 1.0).all())
    before, after = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-3.0, 0.0]])
    assert geo.drift(before, after).tolist() == [0.0, -1.0]


def test_select_rows_is_by_id_and_rejects_unknown_ids():
    w = torch.arange(12.0).reshape(6, 2)
    assert geo.select_rows(w, [4, 1]).tolist() == [[8.0, 9.0], [2.0, 3.0]]
    with pytest.raises(ValueError, match="token id 6"):
        geo.select_rows(w, [0, 6])


# --------------------------------------------------------------------------- neighbours


def test_nearest_neighbours_match_brute_force_with_tiny_chunks():
    q = torch.randn(300, 24, generator=gen(10))
    base = torch.randn(500, 24, generator=gen(11)) * torch.rand(500, 1, generator=gen(12))
    scores, pos = geo.nearest_neighbours(q, base, 7, budget=1000)  # 2 queries per block
    full = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(base, dim=1).T
    ref = full.topk(7, dim=1)
    assert torch.equal(pos, ref.indices)
    assert torch.allclose(scores, ref.values, atol=1e-6)


def test_neighbour_overlap_counts_shared_ids():
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    b = torch.tensor([[3, 9, 1], [4, 5, 6]])
    assert geo.neighbour_overlap(a, b) == pytest.approx((2 / 3 + 1) / 2)


# --------------------------------------------------------------------------- cosines, PIP


def test_pairwise_cosines_are_seeded_and_detect_a_collapsed_new_cloud():
    base = torch.randn(400, 32, generator=gen(13))
    new = ray_cone(300, 32, seed=14)
    first = spec.pairwise_cosines(base, new, 2000, gen(99))
    again = spec.pairwise_cosines(base, new, 2000, gen(99))
    assert first["n"] == 2000 and first["seed"] == 99
    assert torch.equal(first["base_base"], again["base_base"])
    assert first["new_new"].min() > 0.99 and abs(float(first["base_base"].mean())) < 0.05
    assert first["ks"]["pvalue"] < 1e-10


def test_pip_loss_matches_the_direct_n_by_n_computation():
    a = torch.randn(60, 8, generator=gen(15), dtype=torch.float64)
    b = a + 0.1 * torch.randn(60, 8, generator=gen(16), dtype=torch.float64)
    c = torch.randn(60, 5, generator=gen(17), dtype=torch.float64)  # other hidden size
    for other in (b, c):
        direct = float(torch.linalg.matrix_norm(a @ a.T - other @ other.T))
        assert spec.pip_loss(a, other) == pytest.approx(direct, rel=1e-9)
    assert spec.pip_loss(a, a.clone()) == 0.0
    stats = spec.pip_stats(a, b)
    scale = float(torch.linalg.matrix_norm(a @ a.T))
    assert stats["relative"] == pytest.approx(stats["pip"] / scale)


# --------------------------------------------------------------------------- metric plugins


class FakeTokenizer:
    def decode(self, ids: list[int]) -> str:
        return f"tok{ids[0]}"


def snapshots(change_new: bool = True) -> tuple[Snapshot, Snapshot]:
    """Rows 0-199 base, 200-209 padding (huge values: must never be read), 210-289 new."""
    g = gen(20)
    w = torch.randn(290, 16, generator=g)
    w[200:210] = 1e6
    base_ids, new_ids = list(range(200)), list(range(210, 290))
    after = w.clone()
    if change_new:
        after[210:] += 0.5 * torch.randn(80, 16, generator=g)
    return (
        Snapshot("injected", w, base_ids, new_ids),
        Snapshot("after-p1", after, base_ids, new_ids),
    )


def context(**kw) -> MetricContext:
    before, after = snapshots(kw.pop("change_new", True))
    words = [f"word{i}" for i in after.new_ids]
    return MetricContext(before=before, after=after, seed=5, new_words=words, **kw)


def run_metric(cls, ctx: MetricContext, **params) -> dict:
    out = cls(cls.Params(**params)).compute(ctx)
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN, no tensors
    return out


ALL_METRICS = [G.Norms, G.Isotropy, G.Drift, G.Neighbours, G.PcaDims, G.PairwiseCosine, G.PipLoss]


@pytest.mark.parametrize("cls", ALL_METRICS)
def test_every_metric_returns_strict_json(cls):
    out = run_metric(cls, context(tokenizer=FakeTokenizer()))
    assert out


def test_registered_metrics_have_names_docstrings_and_params():
    classes = G.wake2vec_register_metrics()
    assert [c.name for c in classes] == [
        "norms", "isotropy", "drift", "neighbours", "pca-dims", "pairwise-cosine", "pip-loss",
    ]
    assert all(c.__doc__ and "\n" not in c.__doc__.strip() for c in classes)
    with pytest.raises(ValueError):
        G.Isotropy.Params(sample_sise=10)


def test_drift_metric_reads_exactly_one_for_untouched_base_rows():
    out = run_metric(G.Drift, context())
    assert out["base"]["mean"] == 1.0 and out["base"]["min"] == 1.0
    assert out["base"]["changed_rows"] == 0 and out["base"]["max_abs_change"] == 0.0
    assert out["new"]["mean"] < 0.99 and out["new"]["changed_rows"] == 80


def test_norms_metric_selects_rows_by_id_not_position():
    out = run_metric(G.Norms, context())
    assert out["after"]["base"]["n"] == 200 and out["after"]["new"]["n"] == 80
    assert out["after"]["base"]["max"] < 100  # the 1e6 padding rows were never read


def test_isotropy_metric_states_its_sample():
    out = run_metric(G.Isotropy, context(), sample_size=50)
    assert out["sample_size"] == 50 and out["seed"] == 5
    assert out["after"]["base"]["rows"] == 50 and out["after"]["all"]["rows"] == 50
    assert 0.0 <= out["after"]["new"]["isoscore"] <= 1.0


def test_neighbours_metric_lists_token_strings_and_full_overlap_when_unchanged():
    ctx = context(tokenizer=FakeTokenizer(), change_new=False)
    out = run_metric(G.Neighbours, ctx, k=3, examples=4)
    assert out["overlap"] == 1.0 and len(out["examples"]) == 4
    first = out["examples"][0]
    assert first["word"].startswith("word") and len(first["after"]) == 3
    assert all(n["token"] == f"tok{n['id']}" and n["id"] < 200 for n in first["after"])


def test_pip_metric_is_zero_for_unchanged_base_rows():
    out = run_metric(G.PipLoss, context())
    assert out["base"]["pip"] == 0.0 and out["new"]["pip"] > 0.0


def test_pairwise_metric_histograms_count_every_pair():
    out = run_metric(G.PairwiseCosine, context(), pairs=500, bins=10)
    assert out["pairs"] == 500 and len(out["bin_edges"]) == 11
    assert sum(out["after"]["new_new"]["histogram"]) == 500


def test_pca_metric_reports_every_row_set():
    out = run_metric(G.PcaDims, context(), thresholds=(0.5, 0.9))
    assert set(out["after"]) == {"label", "hidden", "base", "new", "all"}
    assert 1 <= out["after"]["base"]["dims"]["0.5"] <= out["after"]["base"]["dims"]["0.9"] <= 16


def test_metrics_module_imports_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, wake2vec_plugins.metrics.geometry, wake2vec_plugins.regularizers.geometry;"
        "bad=[m for m in ('torch','numpy','scipy') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_neighbours_metric_states_its_samples_and_seeds():
    out = run_metric(G.Neighbours, context(), k=2, examples=3, overlap_sample=10)
    assert out["seed"] == 5 and out["examples_seed"] == 6
    assert out["sample"] == {"overlap": 10, "new_tokens": 80}
    assert 10 <= out["queries"] <= 13  # the overlap sample plus the examples not already in it


def test_neighbours_without_tokenizer_gives_no_strings():
    out = run_metric(G.Neighbours, context(), k=2, examples=1)
    assert out["examples"][0]["after"][0]["token"] is None


def test_jsonable_turns_nan_into_null():
    assert G.jsonable({"a": float("nan"), "b": torch.tensor([1.5]), "c": np.float32(2)}) == {
        "a": None, "b": [1.5], "c": 2.0,
    }
    with pytest.raises(TypeError):
        G.jsonable(SimpleNamespace())


def test_metric_plugins_load_into_the_registry():
    from wake2vec.plugins import Plugins, _new_manager, unknown_hooks
    from wake2vec.registry import Registry

    assert unknown_hooks(G) == []
    plugins = Plugins(pm=_new_manager())
    plugins.pm.register(G, name="wake2vec_plugins.metrics.geometry")
    registry = Registry(plugins)
    assert "pip-loss" in registry.names("metric")
    metric = registry.create("metric", "isotropy", {"sample_size": 100})
    assert metric.params.sample_size == 100


def test_merged_moments_equal_those_of_the_union():
    a = torch.randn(70, 6, generator=gen(30)) + 3
    b = torch.randn(50, 6, generator=gen(31)) * 2
    merged, direct = spec.merge_moments(spec.moments(a), spec.moments(b)), spec.moments(torch.cat([a, b]))
    assert merged.n == 120
    assert torch.allclose(merged.mean, direct.mean)
    assert torch.allclose(merged.scatter, direct.scatter)


def test_pca_and_pip_metrics_on_all_rows_match_direct_computations():
    ctx = context()
    all_ids = ctx.after.base_ids + ctx.after.new_ids
    before = geo.select_rows(ctx.before.weight, all_ids)
    after = geo.select_rows(ctx.after.weight, all_ids)
    pca = run_metric(G.PcaDims, ctx, thresholds=(0.5, 0.8, 0.99))
    assert pca["after"]["all"]["dims"] == spec.pca_dims(after, (0.5, 0.8, 0.99))
    pip = run_metric(G.PipLoss, ctx)
    # float32 rows: Grams from float32 chunk products, summed per row set (the plugin) or in
    # one pass (pip_loss), agree to float32 rounding, not to float64's (see test_pip_* below)
    assert pip["all"]["pip"] == pytest.approx(spec.pip_loss(before, after), rel=1e-6)


def test_row_changes_count_rows_and_the_largest_change():
    a = torch.zeros(5, 3)
    b = a.clone()
    b[1, 2], b[3, 0] = 0.25, -2.0
    assert geo.row_changes(a, b) == {"changed_rows": 2, "max_abs_change": 2.0}
    assert geo.select_rows(a, [1, 2, 3]).data_ptr() == a[1:].data_ptr()  # a run: no copy


# --------------------------------------------------------------------------- fast paths


def test_symmetric_gram_equals_the_full_product_and_is_exactly_symmetric():
    x = torch.randn(3000, 1100, generator=gen(40), dtype=torch.float64)  # 3 column blocks
    g = spec._gram(x)
    assert torch.equal(g, g.T)
    assert torch.allclose(g, x.T @ x, rtol=1e-12, atol=1e-9)
    x32 = x.float()
    fast = spec._gram(x32, exact=False)  # float32 chunk products, float64 sums
    exact = spec._gram(x32)
    assert torch.equal(fast, fast.T)
    assert float((fast - exact).abs().max()) < 1e-5 * float(exact.diagonal().max())


def test_float32_moments_match_float64_products_to_float32_rounding():
    x = torch.randn(5000, 96, generator=gen(41)) * 0.02 + 0.3  # a large shared offset
    fast, exact = spec.moments(x), spec.moments(x, exact=True)
    assert torch.equal(fast.mean, exact.mean)
    assert float((fast.scatter - exact.scatter).abs().max()) < 1e-5 * float(exact.scatter.max())
    assert spec.pca_dims(fast) == spec.pca_dims(exact)


def test_isotropy_gives_both_measures_from_one_pass_over_the_rows():
    x = ray_cone(3000, 24, seed=42) + 0.5 * torch.randn(3000, 24, generator=gen(43))
    both = spec.isotropy(x)
    assert both["mu"] == pytest.approx(spec.isotropy_mu(x), rel=1e-12)
    assert both["isoscore"] == pytest.approx(spec.isoscore(x), rel=1e-6)
    x64 = x.double()  # float32 rows project in float32: the same value to float32 rounding
    assert spec.isotropy_mu(x) == pytest.approx(spec.isotropy_mu(x64), rel=1e-5)


def direct_pip(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    d = b - a
    return float(torch.linalg.matrix_norm(a @ d.T + d @ b.T))  # BB^T - AA^T, no cancellation


def test_pip_on_float32_rows_matches_the_direct_computation():
    a = torch.randn(400, 48, generator=gen(44))
    b = a.clone()
    b[::7] += 0.05 * torch.randn(len(range(0, 400, 7)), 48, generator=gen(45))  # some rows move
    assert spec.pip_loss(a, b) == pytest.approx(direct_pip(a, b), rel=1e-5)
    grams = spec.pip_grams(a, b)
    assert set(grams) == {"aa", "ad", "dd"}
    top, bottom = spec.pip_grams(a[:200], b[:200]), spec.pip_grams(a[200:], b[200:])
    union = {key: top[key] + bottom[key] for key in top}  # as the metric combines row sets
    assert spec.pip_from_grams(union)["pip"] == pytest.approx(direct_pip(a, b), rel=1e-5)


def test_pip_resolves_a_change_far_below_the_gram_difference_resolution():
    # ||A^T A||^2 + ||B^T B||^2 - 2||A^T B||^2 cannot see a change of 1e-9 in rows of norm 100.
    a = 10.0 * torch.randn(300, 16, generator=gen(46), dtype=torch.float64)
    b = a + 1e-9 * torch.randn(300, 16, generator=gen(47), dtype=torch.float64)
    assert spec.pip_loss(a, b) == pytest.approx(direct_pip(a, b), rel=1e-6)
    assert spec.pip_loss(a, b) > 0.0


def test_pip_with_other_hidden_size_keeps_the_gram_difference_form():
    a = torch.randn(50, 6, generator=gen(48), dtype=torch.float64)
    c = torch.randn(50, 4, generator=gen(49), dtype=torch.float64)
    assert set(spec.pip_grams(a, c)) == {"aa", "bb", "ab"}
    direct = float(torch.linalg.matrix_norm(a @ a.T - c @ c.T))
    assert spec.pip_loss(a, c) == pytest.approx(direct, rel=1e-9)


def test_memo_measures_equal_rows_once():
    calls = []

    def measure(x: torch.Tensor) -> dict:
        calls.append(x.shape[0])
        return {"sum": float(x.sum())}

    memo = geo.Memo()
    x = torch.randn(20, 4, generator=gen(50))
    first = memo(measure, x)
    assert memo(measure, x.clone()) is first  # equal rows, another tensor: reused
    y = x.clone()
    y[3, 1] += 1.0
    assert memo(measure, y) is not first  # one entry differs: measured again
    assert memo(measure, x[:10]) is not first  # another shape
    assert calls == [20, 20, 10]


def test_isotropy_and_pca_metrics_report_equal_base_rows_identically():
    ctx = context()  # base rows untouched between the snapshots
    iso = run_metric(G.Isotropy, ctx, sample_size=150)
    assert iso["before"]["base"] == iso["after"]["base"]
    assert iso["before"]["new"] != iso["after"]["new"]
    pca = run_metric(G.PcaDims, ctx)
    assert pca["before"]["base"] == pca["after"]["base"]


def test_covariance_eigenvalues_are_computed_once_per_moments():
    m = spec.moments(torch.randn(300, 12, generator=gen(51)))
    first = spec._covariance_eigenvalues(m)
    assert spec._covariance_eigenvalues(m) is first  # the same instance: not recomputed
    assert spec.pca_dims(m) == spec.pca_dims(spec.Moments(m.n, m.mean, m.scatter.clone()))
