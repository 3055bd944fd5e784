"""Benchmark: every built-in geometry metric, with its default parameters, on a before and an
after snapshot of a 77,000 x 2,048 float32 matrix (32,000 base rows, 45,000 new rows), as a
run's analysis computes them after P1 (target: the whole suite < 60 s)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_initializers import anisotropic_base  # noqa: E402
from common import Report, parse_args, timer  # noqa: E402

TARGET_S = 60.0
FULL = {"base_rows": 32_000, "new_rows": 45_000, "hidden": 2048}
QUICK = {"base_rows": 600, "new_rows": 800, "hidden": 64}
SEED = 0
# The metrics in their registration order; each is created from the registry with {} (defaults).
METRICS = ("norms", "isotropy", "drift", "neighbours", "pca-dims", "pairwise-cosine", "pip-loss")


def snapshots(base_rows: int, new_rows: int, hidden: int, seed: int = SEED) -> tuple[Any, Any]:
    """A P1-like pair of snapshots: ids 0..base_rows-1 are base rows (anisotropic, with a shared
    offset; identical in both snapshots), the rest are new rows, each near a random base row
    (pulled a third of the way to the mean, plus noise) and moved by training in ``after``."""
    import torch

    from wake2vec.api import Snapshot

    g = torch.Generator().manual_seed(seed + 1)
    base = anisotropic_base(base_rows, hidden, seed)
    parents = torch.randint(0, base_rows, (new_rows,), generator=g)
    weight = torch.empty(base_rows + new_rows, hidden)
    weight[:base_rows] = base
    new = weight[base_rows:]
    new.copy_(base[parents]).mul_(2 / 3).add_(base.mean(0), alpha=1 / 3)
    new.add_(torch.randn(new_rows, hidden, generator=g), alpha=0.005)
    after = weight.clone()
    # P1 moves the new rows: a shared drift direction plus a per-row step.
    direction = torch.nn.functional.normalize(torch.randn(hidden, generator=g), dim=0)
    after[base_rows:].add_(direction, alpha=0.05)
    after[base_rows:].add_(torch.randn(new_rows, hidden, generator=g), alpha=0.01)
    base_ids = list(range(base_rows))
    new_ids = list(range(base_rows, base_rows + new_rows))
    return (
        Snapshot("injected", weight, base_ids, new_ids),
        Snapshot("after-p1", after, base_ids, new_ids),
    )


def sampling(name: str, out: dict[str, Any], sizes: dict[str, int]) -> tuple[str, bool]:
    """What ``name`` computed exactly and what it sampled, read from its own output, and
    whether the output states every sample it drew (size and seed)."""
    n_base, n_new = sizes["base_rows"], sizes["new_rows"]
    if name == "isotropy":
        size, seed = out.get("sample_size"), out.get("seed")
        rows = {w: out["after"][w]["rows"] for w in ("base", "new", "all")}
        stated = size is not None and seed is not None and max(rows.values()) <= size
        return (
            f"sampled: up to {size} rows per set, seed {seed} (rows used: {rows}); the "
            "eigendecomposition and partition functions on each sample are exact",
            stated,
        )
    if name == "neighbours":
        queries, seed, sample = out.get("queries"), out.get("seed"), out.get("sample")
        stated = None not in (queries, seed, sample, out.get("examples_seed"))
        overlap = (sample or {}).get("overlap")
        return (
            f"sampled queries: {queries} of {n_new} new tokens ({overlap} drawn with seed {seed} "
            f"for the overlap, plus the listed examples drawn with seed {out.get('examples_seed')}"
            f"); each query's top-{out.get('k')} among all {n_base} base rows is exact",
            stated,
        )
    if name == "pairwise-cosine":
        pairs, seed = out.get("pairs"), out.get("seed")
        return (
            f"sampled: {pairs} random pairs per group, seed {seed}",
            pairs is not None and seed is not None,
        )
    if name == "pca-dims":
        rows = {w: out["after"][w]["rows"] for w in ("base", "new", "all")}
        exact = rows == {"base": n_base, "new": n_new, "all": n_base + n_new}
        return f"exact: every row (rows: {rows})", exact
    if name == "norms":
        n = (out["after"]["base"]["n"], out["after"]["new"]["n"])
        return f"exact: every row ({n[0]} base, {n[1]} new)", n == (n_base, n_new)
    if name in ("drift", "pip-loss"):
        n = (out["base"]["rows"], out["new"]["rows"])
        return f"exact: every row ({n[0]} base, {n[1]} new)", n == (n_base, n_new)
    return "unknown", False


def matmul_gflops(size: int, seconds: float = 1.0) -> float:
    """Float32 matrix-product throughput the machine gives this process now (size x size
    products for about ``seconds``): with the load average, it shows how busy the machine was."""
    import torch

    a = torch.randn(size, size)
    a @ a  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ a
        done += 1
    return 2.0 * size**3 * done / (time.perf_counter() - started) / 1e9


def main(argv: list[str] | None = None) -> int:
    import torch

    from wake2vec.api import MetricContext
    from wake2vec.registry import get_registry

    args = parse_args(__doc__.splitlines()[0], argv)
    sizes = QUICK if args.quick else FULL
    report = Report("analysis", args.quick)
    report.details.update(sizes=sizes, threads=torch.get_num_threads(), seed=SEED)
    report.details["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY")
    report.details["load_average_before"] = list(os.getloadavg())
    probe = 256 if args.quick else 2048
    report.add(
        f"float32 matmul throughput before ({probe}^3 products; about 210 on 2 idle cores)",
        round(matmul_gflops(probe, 0.2 if args.quick else 2.0), 1),
        "GFLOP/s",
    )

    with timer() as t_setup:
        before, after = snapshots(sizes["base_rows"], sizes["new_rows"], sizes["hidden"])
    total_rows = sizes["base_rows"] + sizes["new_rows"]
    print(
        f"{total_rows} x {sizes['hidden']} float32, {sizes['new_rows']} new rows, "
        f"{torch.get_num_threads()} threads"
    )
    report.add("setup: two snapshots (not timed against target)", t_setup["s"], "s")
    words = [f"coinage{i}" for i in range(sizes["new_rows"])]
    ctx = MetricContext(before=before, after=after, seed=SEED, new_words=words)
    registry = get_registry()

    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # this process's CPU time (spin-waits count too)
    for name in METRICS:
        metric = registry.create("metric", name, {})
        cpu = time.process_time()
        with timer() as t:  # as wake2vec.runner does: compute, then a JSON round trip
            results[name] = json.loads(json.dumps(metric.compute(ctx), default=float))
        seconds[name], cpu_seconds[name] = t["s"], time.process_time() - cpu
        report.add(f"{name}", t["s"], "s")
    total = sum(seconds.values())
    report.add(
        f"whole suite ({len(METRICS)} metrics, defaults)",
        total,
        "s",
        f"< {TARGET_S:g} s",
        total < TARGET_S,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.add("peak RSS (process)", round(peak), "MiB")
    report.details["load_average_after"] = list(os.getloadavg())
    report.add(
        "float32 matmul throughput after",
        round(matmul_gflops(probe, 0.2 if args.quick else 2.0), 1),
        "GFLOP/s",
    )

    loads = (report.details["load_average_before"][0], report.details["load_average_after"][0])
    report.add("load average (1 min) before / after", f"{loads[0]:.2f} / {loads[1]:.2f}")

    statements, all_stated = {}, True
    for name in METRICS:
        text, stated = sampling(name, results[name], sizes)
        statements[name] = text
        all_stated &= stated
        print(f"  {name}: {text}")
    report.add(
        "every sample's size and seed stated in the output", all_stated, "", "yes", all_stated
    )
    # P1 leaves base rows untouched: the metrics must see that exactly.
    drift_base = results["drift"]["base"]
    report.add("drift of base rows (mean, min)", f"{drift_base['mean']} / {drift_base['min']}")
    report.add("PIP loss of base rows", results["pip-loss"]["base"]["pip"])
    report.add("neighbour overlap before/after", results["neighbours"]["overlap"])
    report.details.update(
        seconds=seconds, cpu_seconds=cpu_seconds, sampling=statements, results=_summary(results)
    )
    report.write(args.json)
    return 0


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of each metric (histograms and examples left out)."""
    iso = results["isotropy"]["after"]
    pca = results["pca-dims"]["after"]
    return {
        "isotropy_after": {
            w: {k: iso[w][k] for k in ("mu", "isoscore")} for w in iso if w != "label"
        },
        "pca_dims_after": {w: pca[w]["dims"] for w in ("base", "new", "all")},
        "drift_new_mean": results["drift"]["new"]["mean"],
        "pip_relative": {w: results["pip-loss"][w]["relative"] for w in ("base", "new", "all")},
        "cohens_d_after": results["norms"]["after"]["cohens_d"],
        "neighbour_overlap": results["neighbours"]["overlap"],
        "ks_after": results["pairwise-cosine"]["after"]["ks_base_new_new"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
