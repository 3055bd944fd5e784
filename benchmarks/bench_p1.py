"""Benchmark: P1 (embedding-only training of the new rows) against a study-style baseline on the
same model, data, steps and seed: tokens/s, peak RSS, loss after N steps, and the achieved matrix
FLOP/s of wake2vec's step as a share of the machine's bf16 and fp32 matrix-product peaks.

The study-style baseline is written here, as the study's notebooks did it: the whole input matrix
and output head trainable, a gradient hook zeroing the base rows' gradients, AdamW over both whole
matrices, fp32, the model's own full-vocabulary logits and cross-entropy (``labels=``). wake2vec
runs its real P1 (``embed-only`` through the training loop) at fp32 and at its recommended
precision (``model.dtype = "bfloat16"``: bf16 frozen weights, fp32 trainable rows). Every variant
runs in its own subprocess, so each ``ru_maxrss`` is that variant's own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SKIPPED, Report, cpu_facts, parse_args  # noqa: E402

# the Llama shapes of the issue: a 4-layer hidden-512 model for throughput, a TinyLlama-shaped
# embedding (hidden 2048, 2 layers) for memory; TinyLlama's 32,000 base rows and the new ids and
# trainable rows the whole-word injector gives the 44,990-word lexicon on its real tokenizer
# (``injected_vocabulary``: two ids per word, one row)
FULL = {
    "throughput": {"hidden": 512, "intermediate": 1408, "layers": 4, "heads": 8, "kv_heads": 8,
                   "base": 32000, "batch": 4, "seq": 256, "steps": 5},
    "memory": {"hidden": 2048, "intermediate": 5632, "layers": 2, "heads": 32, "kv_heads": 4,
               "base": 32000, "batch": 4, "seq": 256, "steps": 2},
}
QUICK = {  # one tiny model for both cases (the smoke test checks the code, not the numbers):
    # a row per new id, so the losses must agree with the baseline's
    "throughput": {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 4, "kv_heads": 4,
                   "base": 500, "new": 700, "rows": 700, "batch": 2, "seq": 32, "steps": 3},
}
QUICK["memory"] = QUICK["throughput"]
VARIANTS = ("study", "wake2vec-fp32", "wake2vec-bf16")
RECOMMENDED = "wake2vec-bf16"
LEARNING_RATE = 2e-3
SEED = 0
# final validation loss against the study-style run: fp32 differs only by summation order;
# bf16 frozen weights move every logit a little
LOSS_TOLERANCE = {"wake2vec-fp32": 0.001, "wake2vec-bf16": 0.02}
ROUNDS = 2  # the throughput variants run in turn this many times
TARGETS = {"speedup_bf16": 3.0, "speedup_fp32": 1.2, "memory_ratio": 0.6, "bf16_peak_share": 0.4}


# --------------------------------------------------------------------------- model and data


def injected_vocabulary(workdir: Path) -> dict[str, Any]:
    """New ids, trainable rows and the alias pairs (written to ``workdir/aliases.json``) of the
    whole-word injector on TinyLlama's real tokenizer (the Llama-2 file) with the shared
    lexicon, computed in a child process (this one imports no torch)."""
    out = workdir / "aliases.json"
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench_p1 import count_child; "
            "count_child(sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), str(out)],
                   check=True)
    found = json.loads(out.read_text(encoding="utf-8"))
    return {"base": found["base"], "new": found["ids"], "rows": found["rows"],
            "aliases_file": str(out), "words": found["rows"]}


def count_child(out: str) -> None:
    from common import LEXICON
    from transformers import AutoTokenizer
    from wake2vec_plugins.injectors.whole_word import WholeWord

    from wake2vec.testing import real_tokenizer_dir
    from wake2vec.vocab.lexicon import load_lexicon

    base = AutoTokenizer.from_pretrained(real_tokenizer_dir("llama2"))
    injection = WholeWord().inject(base, load_lexicon(LEXICON).words)
    first = len(base)  # the new ids as a model with exactly the base rows numbers them
    pairs = sorted((a - first, o - first) for a, o in injection.aliases.items())
    Path(out).write_text(json.dumps({"base": first, "ids": len(injection.ids),
                                     "rows": len(injection.row_ids()), "pairs": pairs}),
                         encoding="utf-8")


def aliases_of(case: dict[str, Any]) -> dict[int, int]:
    """The case's alias pairs as model ids: from the injector's output (none for ``--quick``,
    which trains a row per id)."""
    base = case["base"]
    if "aliases_file" not in case:
        return {}
    pairs = json.loads(Path(case["aliases_file"]).read_text(encoding="utf-8"))["pairs"]
    return {base + a: base + o for a, o in pairs}


def build_model(case: dict[str, Any], directory: Path) -> None:
    """A random-weight untied Llama with ``base + new`` rows, saved with save_pretrained."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=case["base"] + case["new"],
        hidden_size=case["hidden"],
        intermediate_size=case["intermediate"],
        num_hidden_layers=case["layers"],
        num_attention_heads=case["heads"],
        num_key_value_heads=case["kv_heads"],
        max_position_embeddings=max(512, case["seq"]),
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # base rows at a realistic scale, new rows initialised near them
        for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            matrix.normal_(0.0, 0.02)
    model.save_pretrained(directory)


def blocks(case: dict[str, Any], count: int, seed: int):
    """``count`` blocks of ``seq`` ids drawn from a Zipf-like distribution over the whole
    vocabulary, with the new ids taking about 40% of the tokens (so their rows matter)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    base, new = case["base"], case["new"]
    def zipf(n: int):
        weights = 1.0 / torch.arange(1, n + 1).float()
        return weights / weights.sum()

    weights = torch.cat([0.6 * zipf(base), 0.4 * zipf(new)])
    ids = torch.multinomial(weights, count * case["seq"], replacement=True, generator=g)
    return ids.view(count, case["seq"])


class BenchData:
    """The slice of ``wake2vec.training.data.DataBundle`` the training loop reads."""

    def __init__(self, case: dict[str, Any]):
        self.train = blocks(case, 64, seed=1)
        self.val = blocks(case, case["batch"], seed=2)
        self.val_blocks = {"n_bytes": [4 * case["seq"]] * len(self.val)}  # nominal bytes
        self.fingerprint = "bench-p1"

    def train_tensor(self):
        return self.train

    def val_tensor(self):
        return self.val

    def val_lengths(self):
        return [self.val.shape[1]] * len(self.val)  # whole blocks: no padding


def phase_spec(case: dict[str, Any]):
    from wake2vec.recipe.schema import PhaseSpec

    return PhaseSpec(strategy="embed-only", steps=case["steps"], learning_rate=LEARNING_RATE,
                     batch_size=case["batch"], scheduler="constant", optimizer="adamw",
                     weight_decay=0.0, max_grad_norm=1.0, eval_batches=1)


# --------------------------------------------------------------------------- FLOPs and peaks


def step_flops(case: dict[str, Any]) -> dict[str, float]:
    """Matrix-product FLOPs of one wake2vec P1 step (2 per multiply-add), counting only the work
    the step needs: forward through body and head (the base rows and one row per word: a bare
    spelling's logit is its word's plus one shared product), the input gradient back through
    every layer (the new input rows need it), and the weight gradient of the new output rows."""
    t, d, n = case["batch"] * case["seq"], case["hidden"], case["rows"]
    v = case["base"] + n  # the aliases' logits come from their owners' products
    kv = d * case["kv_heads"] // case["heads"]
    linear = 2 * t * (d * (d + 2 * kv + d) + 3 * d * case["intermediate"])  # q k v o + gate up down
    # QK^T and PV, the causal half only
    attention = 2 * 2 * case["batch"] * case["seq"] * case["seq"] * d / 2
    body_forward = case["layers"] * (linear + attention)
    body_backward = case["layers"] * (linear + 2 * attention)  # input gradients only
    head_forward = 2 * t * d * v
    head_backward = 2 * t * d * v + 2 * t * d * n  # d(hidden) over all rows; d(rows) new only
    total = body_forward + body_backward + head_forward + head_backward
    return {"body_forward": body_forward, "body_backward": body_backward,
            "head_forward": head_forward, "head_backward": head_backward, "total": total,
            "head_share": (head_forward + head_backward) / total}


def matmul_peaks(repeats: int = 3, small: bool = False,
                 dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> dict[str, float]:
    """Best GFLOP/s of large matrix products in each of ``dtypes`` (the machine's practical
    peak; ``small``: products a hundred times smaller, for ``--quick`` and for choosing)."""
    import torch

    shapes = [(2048, 2048, 2048), (1024, 512, 8192), (1024, 2048, 8192)]
    if small:
        shapes = [(256, 256, 256), (128, 128, 1024)]
    peaks = {}
    for dtype in (getattr(torch, name) for name in dtypes):
        best = 0.0
        for m, k, n in shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            a @ b  # warm-up
            for _ in range(repeats):
                started = time.perf_counter()
                a @ b
                best = max(best, 2 * m * k * n / (time.perf_counter() - started) / 1e9)
        peaks[str(dtype).removeprefix("torch.")] = best
    return peaks


# --------------------------------------------------------------------------- the variants


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident memory now (``VmRSS``) or at its highest so far (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_study(case: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """The study-style P1: whole matrices trainable, hooks zero base-row gradients, AdamW over
    both whole matrices, fp32, the model's own loss."""
    import torch
    from transformers import AutoModelForCausalLM

    from wake2vec.training.evaluate import evaluate
    from wake2vec.training.loop import BatchOrder

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    loaded_rss = rss_mib()
    data = BenchData(case)
    for p in model.parameters():
        p.requires_grad_(False)
    matrices = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    keep = torch.zeros(matrices[0].shape[0], 1)
    keep[case["base"]:] = 1.0
    for matrix in matrices:
        matrix.requires_grad_(True)
        matrix.register_hook(lambda grad: grad * keep)  # base rows get no gradient
    optimizer = torch.optim.AdamW(matrices, lr=LEARNING_RATE, weight_decay=0.0)
    order = BatchOrder(len(data.train), case["batch"], f"{SEED}-p1")  # wake2vec's data order
    model.train()
    losses, times = [], []
    for step in range(case["steps"]):
        started = time.perf_counter()
        batch = data.train[order(step)]
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(matrices, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
    metrics = evaluate(model, data.val, data.val_blocks["n_bytes"], case["batch"], 1, 1)
    return {"losses": losses, "step_s": times, "val_loss": metrics["val_loss"],
            "loaded_rss_mib": loaded_rss}


def run_wake2vec(
    case: dict[str, Any], model_dir: Path, dtype: str, out_dir: Path
) -> dict[str, Any]:
    """wake2vec's own P1 (``embed-only`` through the training loop), model loaded in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM
    from wake2vec_plugins.phases.embed_only import EmbedOnly

    from wake2vec.api import PhaseContext

    marks: dict[str, float] = {}

    class Events:
        def evaluation(self, step, metrics):  # after the last step, before its checkpoint
            marks["peak_before_checkpoint_mib"] = rss_mib("VmHWM")

        def checkpoint_saved(self, step, path):
            pass

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    loaded_rss = rss_mib()
    aliases = aliases_of(case)
    owners = [i for i in range(case["base"], case["base"] + case["new"]) if i not in aliases]
    g = torch.Generator().manual_seed(SEED)  # a form shift of a realistic size (see injection)
    shifts = {side: 0.01 * torch.randn(case["hidden"], generator=g) for side in ("input", "output")}
    ctx = PhaseContext(
        name="p1", index=0, model=model, tokenizer=[None] * (case["base"] + case["new"]),
        new_ids=owners, base_vocab_size=case["base"], tied=False, lora_targets=(),
        train=phase_spec(case), data=BenchData(case), out_dir=out_dir, seed=SEED, resume=False,
        events=Events(), aliases=aliases, alias_shift=shifts,
    )
    result = EmbedOnly().run(ctx)
    rows = [r for r in result.history if r["kind"] == "train"]
    elapsed = [0.0] + [r["elapsed_s"] for r in rows]
    return {"losses": [r["train_loss"] for r in rows],
            "step_s": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
            "val_loss": result.metrics["val_loss"], "loaded_rss_mib": loaded_rss, **marks}


def child(variant: str, case: dict[str, Any], model_dir: Path, out: Path) -> None:
    """One task in a fresh process: ``build`` the model or run a variant (with the matrix
    peaks measured in the same process just before and after); writes JSON to ``out``."""
    if variant == "build":
        build_model(case, model_dir)
        out.write_text("{}", encoding="utf-8")
        return
    small = case["hidden"] < 256  # --quick
    dtypes = tuple(case.get("peak_dtypes", ("float32", "bfloat16")))
    peaks = [matmul_peaks(small=small, dtypes=dtypes)]
    with tempfile.TemporaryDirectory(prefix="wake2vec-p1-") as tmp:
        if variant == "study":
            found = run_study(case, model_dir)
        else:
            dtype = "bfloat16" if variant.endswith("bf16") else "float32"
            found = run_wake2vec(case, model_dir, dtype, Path(tmp))
    found["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peaks.append(matmul_peaks(small=small, dtypes=dtypes))
    found["peaks_gflops"] = {k: max(p[k] for p in peaks) for k in peaks[0]}
    out.write_text(json.dumps(found), encoding="utf-8")


def spawn(variant: str, case: dict[str, Any], model_dir: Path, out: Path,
          script: str = __file__) -> dict[str, Any]:
    """Run ``script``'s child task ``variant`` in a fresh process; returns the JSON it wrote."""
    argv = [sys.executable, script, "--child", variant, "--case", json.dumps(case),
            "--model", str(model_dir), "--out", str(out)]
    subprocess.run(argv, check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def measure(case: dict[str, Any], model_dir: Path, workdir: Path, rounds: int,
            variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Run the variants in turn, ``rounds`` times (study, fp32, bf16, study, ...), so a change
    in the machine's load falls on all of them; pool each variant's steady steps (every step
    but a process's first) and keep its largest peak RSS."""
    pooled: dict[str, dict[str, Any]] = {}
    for r in range(rounds):
        for variant in variants:
            found = spawn(variant, case, model_dir, workdir / f"{variant}-{r}.json")
            found["load_average"] = cpu_facts()["load_average"]
            entry = pooled.setdefault(variant, {"runs": []})
            entry["runs"].append(found)
    for entry in pooled.values():
        runs = entry["runs"]
        steady = sorted(t for run in runs for t in (run["step_s"][1:] or run["step_s"]))
        entry["median_step_s"] = steady[len(steady) // 2]
        entry["fastest_step_s"] = steady[0]
        entry["tokens_per_s"] = case["batch"] * case["seq"] / entry["median_step_s"]
        entry["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
        entry["val_loss"] = runs[0]["val_loss"]
        entry["losses"] = runs[0]["losses"]
        entry["deterministic"] = all(run["losses"] == runs[0]["losses"] for run in runs)
    return pooled


# --------------------------------------------------------------------------- the report


def variants_here(quick: bool) -> tuple[tuple[str, ...], dict[str, float]]:
    """The variants worth running on this machine, and the matrix-product peaks (small
    products, in a child process) they were chosen by: bf16 frozen weights are left out where
    bf16 products run at under a tenth of fp32's speed (emulated: a step would take minutes)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench_p1 import matmul_peaks; "
            "print(json.dumps(matmul_peaks(2, small=True)))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
                         capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    if quick or probe["bfloat16"] >= 0.1 * probe["float32"]:
        return VARIANTS, probe
    return tuple(v for v in VARIANTS if v != RECOMMENDED), probe



def vocabulary_or_skip(report: Report, workdir: Path) -> str | None:
    """Put the injected vocabulary in ``report.details``, or say why it cannot be had."""
    from common import LEXICON

    if not LEXICON.is_file():
        report.skipped = f"lexicon not found at {LEXICON}"
    else:
        try:
            report.details["vocabulary"] = injected_vocabulary(workdir)
        except subprocess.CalledProcessError as exc:
            report.skipped = f"the real Llama-2 tokenizer's injection failed (exit {exc.returncode})"
    if report.skipped:
        print(f"SKIPPED: {report.skipped}")
        return report.skipped
    found = report.details["vocabulary"]
    report.add("vocabulary: base + new ids (trainable rows), whole-word on the Llama-2 file",
               f"{found['base']} + {found['new']} ({found['rows']})")
    return None



def main(argv: list[str] | None = None) -> int:
    if argv is None and "--child" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
        case, model, out = json.loads(args["--case"]), Path(args["--model"]), Path(args["--out"])
        child(args["--child"], case, model, out)
        return 0
    # this process imports no torch and builds nothing: a child's ru_maxrss starts from the RSS
    # of the process it was forked from, so the parent must stay small
    args = parse_args(__doc__.splitlines()[0], argv)
    cases = QUICK if args.quick else FULL
    rounds = 1 if args.quick else ROUNDS
    report = Report("p1", args.quick)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-p1-") as tmp:
        if not args.quick:
            skipped = vocabulary_or_skip(report, Path(tmp))
            if skipped:
                report.write(args.json)
                return SKIPPED
            cases = {name: {**case, **report.details["vocabulary"]} for name, case in cases.items()}
        report.details.update(cases=cases, rounds=rounds, machine_before=cpu_facts())
        variants, probe = variants_here(args.quick)
        report.details["precision_probe_gflops"] = probe
        if RECOMMENDED not in variants:  # emulated bf16: its large products alone take minutes
            cases = {name: {**case, "peak_dtypes": ["float32"]} for name, case in cases.items()}
        for name, case in cases.items():
            if name == "memory" and case == cases["throughput"]:  # --quick: one tiny model
                results[name] = results["throughput"]
                continue
            model_dir = Path(tmp) / name
            spawn("build", case, model_dir, Path(tmp) / "build.json")
            print(f"{name}: hidden {case['hidden']}, {case['layers']} layers, "
                  f"{case['base']}+{case['new']} ids ({case['rows']} trainable rows), "
                  f"batch {case['batch']} x {case['seq']}", flush=True)
            repeat = rounds if name == "throughput" else 1
            results[name] = measure(case, model_dir, Path(tmp), repeat, variants)
    report.details["results"] = results
    report.details["machine_after"] = cpu_facts()

    through, memory = results["throughput"], results["memory"]
    study = through["study"]
    if RECOMMENDED not in variants:
        report.add(f"{RECOMMENDED}: not measured", f"bf16 products run at {probe['bfloat16']:.1f} "
                   f"GFLOP/s here (fp32 {probe['float32']:.0f}): emulated, no AVX512-BF16 or AMX")
    for variant in variants:
        found = through[variant]
        report.add(f"throughput: {variant} tokens/s (median step)", round(found["tokens_per_s"], 1),
                   "tok/s")
    for variant, key in (("wake2vec-fp32", "speedup_fp32"), (RECOMMENDED, "speedup_bf16")):
        if variant not in variants:
            continue
        ratio = through[variant]["tokens_per_s"] / study["tokens_per_s"]
        fastest = study["fastest_step_s"] / through[variant]["fastest_step_s"]
        report.add(f"throughput: {variant} / study", round(ratio, 2), "x",
                   f">= {TARGETS[key]:g}x", ratio >= TARGETS[key])
        report.add(f"throughput: {variant} / study, fastest steps", round(fastest, 2), "x")
    report.add("throughput: study loss at step 1 / validation after", f"{study['losses'][0]:.4f} / "
               f"{study['val_loss']:.4f}")
    # with aliases the two train different parameters (one row per word against one per id), so
    # their losses differ by more than summation order; tests/test_p1_fast.py checks that the
    # fast head computes exactly the plain cross-entropy of the same parameters
    same_parameters = not aliases_of(cases["throughput"])
    for variant, tolerance in LOSS_TOLERANCE.items():
        if variant not in variants:
            continue
        gap = abs(through[variant]["val_loss"] - study["val_loss"]) / study["val_loss"]
        if same_parameters:
            report.add(f"throughput: {variant} validation loss vs study (relative)", round(gap, 6),
                       "", f"<= {tolerance:g}", gap <= tolerance)
        else:
            report.add(f"throughput: {variant} validation loss vs study (relative; one row per "
                       "word against one per id)", round(gap, 6))
        report.add(f"throughput: {variant} same losses in every round",
                   through[variant]["deterministic"], "", "true",
                   through[variant]["deterministic"])
    for variant in variants:
        report.add(f"throughput: {variant} peak RSS", round(through[variant]["peak_rss_mib"]),
                   "MiB")
    for variant in variants:
        report.add(f"memory: {variant} peak RSS", round(memory[variant]["peak_rss_mib"]), "MiB")
    for variant in ("wake2vec-fp32", RECOMMENDED):
        if variant not in variants:
            continue
        ratio = memory[variant]["peak_rss_mib"] / memory["study"]["peak_rss_mib"]
        target = TARGETS["memory_ratio"] if variant == RECOMMENDED else None
        report.add(f"memory: {variant} / study peak RSS", round(ratio, 3), "x",
                   f"<= {target:g}x" if target else "", None if target is None else ratio <= target)
    flops = step_flops(cases["throughput"])
    all_runs = [run for v in variants for run in through[v]["runs"]]
    peaks = {k: max(run["peaks_gflops"].get(k, probe[k]) for run in all_runs)
             for k in ("float32", "bfloat16")}
    report.details["step_flops"] = flops
    report.details["peaks_gflops"] = peaks
    report.add("efficiency: matrix FLOPs per P1 step", round(flops["total"] / 1e9, 2), "GFLOP")
    report.add("efficiency: measured peak fp32 / bf16 (best in the run)",
               f"{peaks['float32']:.0f} / {peaks['bfloat16']:.0f}", "GFLOP/s")
    for variant, peak_key in (("wake2vec-fp32", "float32"), (RECOMMENDED, "bfloat16")):
        if variant not in variants:
            continue
        entry = through[variant]
        achieved = flops["total"] / entry["median_step_s"] / 1e9
        share = achieved / peaks[peak_key]
        # the same share against the peak measured in the same processes (same load)
        own_peak = sorted(run["peaks_gflops"][peak_key] for run in entry["runs"])[-1]
        report.add(f"efficiency: {variant} achieved (median step)", round(achieved, 1), "GFLOP/s")
        target = TARGETS["bf16_peak_share"] if variant == RECOMMENDED else None
        report.add(f"efficiency: {variant} share of best {peak_key} peak", round(share, 3), "",
                   f">= {target:g}" if target else "", None if target is None else share >= target)
        report.add(f"efficiency: {variant} share of {peak_key} peak in its own processes",
                   round(achieved / own_peak, 3))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
