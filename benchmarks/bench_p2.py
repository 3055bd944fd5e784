"""Benchmark: a P2 (LoRA, embeddings frozen) step through wake2vec against plain peft + the
transformers Trainer on the same model, LoRA settings, batch and seed: the plugin layer adds no
overhead.

Both train LoRA adapters (r 8, alpha 16, no dropout) on the Llama family's targets (q, k, v, o,
gate, up and down projections) of the 4-layer hidden-512 Llama of ``bench_p1`` (32,000 base rows
and 89,352 new ids: the whole-word injector's output for the Wake lexicon on TinyLlama's
tokenizer), fp32, batch 4 x 256, AdamW at a constant rate, gradient clipping at 1.0. wake2vec runs its
real ``lora`` phase through its training loop; the plain side is ``get_peft_model`` and
``Trainer.train`` with nothing saved and nothing logged but the step times. Each side runs in its
own process, in turn, for two rounds, and each keeps its steady steps (all but a process's
first); the ratio is of median step times.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_p1 import FULL, QUICK, SEED, BenchData, build_model  # noqa: E402
from bench_p1 import spawn as spawn_child  # noqa: E402

INJECTED_IDS = 89352  # whole-word, 44,676 Wake words on the Llama-2 file (bench_p1 measures it)
from common import Report, cpu_facts, parse_args  # noqa: E402

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK, ALPHA, LEARNING_RATE = 8, 16, 2e-4
VARIANTS = ("peft-trainer", "wake2vec")
ROUNDS = 2
TARGET_RATIO = 0.95  # wake2vec tokens/s at least this share of plain peft + Trainer's


def case_of(quick: bool) -> dict[str, Any]:
    case = dict((QUICK if quick else FULL)["throughput"])
    case.setdefault("new", INJECTED_IDS)  # the rows a P2 sees; they are frozen in it
    case["steps"] = 4 if quick else 8
    return case


def run_trainer(case: dict[str, Any], model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Plain peft + transformers Trainer."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                             target_modules=list(TARGETS), task_type="CAUSAL_LM"))
    train = BenchData(case).train
    dataset = Dataset.from_dict({"input_ids": train.tolist(), "labels": train.tolist()})
    times: list[float] = []
    losses: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    arguments = TrainingArguments(
        output_dir=str(out_dir), max_steps=case["steps"], per_device_train_batch_size=case["batch"],
        learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=True, seed=SEED,
    )
    Trainer(model=model, args=arguments, train_dataset=dataset,
            data_collator=default_data_collator, callbacks=[StepTimes()]).train()
    return {"step_s": times, "losses": losses}


def run_wake2vec(case: dict[str, Any], model_dir: Path, out_dir: Path) -> dict[str, Any]:
    """wake2vec's ``lora`` phase through its training loop."""
    import torch
    from transformers import AutoModelForCausalLM
    from wake2vec_plugins.phases.lora import Lora

    from wake2vec.api import PhaseContext
    from wake2vec.recipe.schema import PhaseSpec

    class Events:
        def evaluation(self, step, metrics):
            pass

        def checkpoint_saved(self, step, path):
            pass

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    spec = PhaseSpec(strategy="lora", steps=case["steps"], learning_rate=LEARNING_RATE,
                     batch_size=case["batch"], scheduler="constant", optimizer="adamw",
                     weight_decay=0.0, max_grad_norm=1.0, eval_batches=1)
    ctx = PhaseContext(
        name="p2", index=1, model=model, tokenizer=[None] * (case["base"] + case["new"]),
        new_ids=list(range(case["base"], case["base"] + case["new"])), base_vocab_size=case["base"],
        tied=False, lora_targets=TARGETS, train=spec, data=BenchData(case), out_dir=out_dir,
        seed=SEED, resume=False, events=Events(),
    )
    lora = Lora(Lora.Params(r=RANK, alpha=ALPHA, dropout=0.0, merge=False))
    result = lora.run(ctx)
    rows = [r for r in result.history if r["kind"] == "train"]
    elapsed = [0.0] + [r["elapsed_s"] for r in rows]
    return {"step_s": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
            "losses": [r["train_loss"] for r in rows]}


def child(variant: str, case: dict[str, Any], model_dir: Path, out: Path) -> None:
    if variant == "build":
        build_model(case, model_dir)
        out.write_text("{}", encoding="utf-8")
        return
    with tempfile.TemporaryDirectory(prefix="wake2vec-p2-") as tmp:
        run = run_trainer if variant == "peft-trainer" else run_wake2vec
        found = run(case, model_dir, Path(tmp))
    found["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(found), encoding="utf-8")


def spawn(variant: str, case: dict[str, Any], model_dir: Path, out: Path) -> dict[str, Any]:
    return spawn_child(variant, case, model_dir, out, script=__file__)


def main(argv: list[str] | None = None) -> int:
    if argv is None and "--child" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
        child(args["--child"], json.loads(args["--case"]), Path(args["--model"]), Path(args["--out"]))
        return 0
    args = parse_args(__doc__.splitlines()[0], argv)
    case = case_of(args.quick)
    rounds = 1 if args.quick else ROUNDS
    report = Report("p2", args.quick)
    report.details.update(case=case, rounds=rounds, machine_before=cpu_facts())
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-p2-") as tmp:
        model_dir = Path(tmp) / "model"
        spawn("build", case, model_dir, Path(tmp) / "build.json")
        print(f"hidden {case['hidden']}, {case['layers']} layers, {case['base']}+{case['new']} rows, "
              f"batch {case['batch']} x {case['seq']}, {case['steps']} steps", flush=True)
        for r in range(rounds):
            for variant in VARIANTS:
                runs[variant].append(spawn(variant, case, model_dir, Path(tmp) / f"{variant}-{r}.json"))
    report.details["runs"] = runs
    report.details["machine_after"] = cpu_facts()
    medians = {}
    for variant in VARIANTS:
        steady = sorted(t for run in runs[variant] for t in (run["step_s"][1:] or run["step_s"]))
        medians[variant] = steady[len(steady) // 2]
        report.add(f"{variant}: tokens/s (median step)",
                   round(case["batch"] * case["seq"] / medians[variant], 1), "tok/s")
        report.add(f"{variant}: peak RSS", round(max(r["peak_rss_mib"] for r in runs[variant])), "MiB")
        report.add(f"{variant}: train loss at the first / last step",
                   f"{runs[variant][0]['losses'][0]:.4f} / {runs[variant][0]['losses'][-1]:.4f}")
    ratio = medians["peft-trainer"] / medians["wake2vec"]
    report.add("wake2vec / plain peft + Trainer tokens/s", round(ratio, 3), "x",
               f">= {TARGET_RATIO:g}x", ratio >= TARGET_RATIO)
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
