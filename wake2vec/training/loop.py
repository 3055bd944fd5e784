"""The training loop every phase shares: accelerate, accumulation, evaluation, checkpoints, resume.

A phase strategy decides which tensors train (a :class:`Trainable`) and calls
:func:`train`; the loop owns the data order, the schedule, logging, early stopping and
checkpoints. The data order is a pure function of the seed and the micro-batch number, so a
resumed run sees exactly the batches an uninterrupted one would.

Under ``accelerate launch`` with several processes every micro-batch of ``batch_size`` blocks
is split between the processes (each takes a contiguous share), DDP averages the gradients, and
the logged losses are reduced over the processes: the effective batch, the schedule and the
losses are those of a single-process run, up to the order of floating-point sums. Only the main
process writes history and checkpoints.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import TrainingError
from wake2vec.seeding import derived_seed
from wake2vec.training import checkpoint as ckpt
from wake2vec.training.evaluate import FRIED, evaluate, regime, token_nll

if TYPE_CHECKING:
    import torch

    from wake2vec.api import PhaseContext


log = logging.getLogger(__name__)


@dataclass
class Trainable:
    """What a phase trains: the parameters, and how to save and restore them."""

    params: list[torch.nn.Parameter]
    state_tensors: Callable[[], dict[str, torch.Tensor]]
    load_state_tensors: Callable[[dict[str, torch.Tensor]], None]
    # an auxiliary loss for the current parameters (added once per optimiser step), and its parts
    extra_loss: Callable[[int], tuple[torch.Tensor, dict[str, float]]] | None = None  # of the step
    # what makes a checkpoint belong to this phase (e.g. the new ids)
    signature: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopOutcome:
    """What the loop hands back to the phase strategy."""

    metrics: dict[str, Any]  # the final evaluation
    history: list[dict[str, Any]]
    step: int
    stopped_early: bool
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    resumed_from: int | None = None


class BatchOrder:
    """Block indices of micro-batch ``m``: consecutive slices of a stream of seeded
    permutations of the training blocks (one permutation per pass)."""

    def __init__(self, n_blocks: int, batch_size: int, seed: int | str):
        self.n, self.batch_size, self.seed = n_blocks, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}

    def _epoch(self, epoch: int) -> torch.Tensor:
        import torch

        if epoch not in self._cache:
            generator = torch.Generator().manual_seed(derived_seed(f"wake2vec-order-{self.seed}-{epoch}"))
            if len(self._cache) > 1:  # keep this pass and the one before
                self._cache.pop(min(self._cache))
            self._cache[epoch] = torch.randperm(self.n, generator=generator)
        return self._cache[epoch]

    def __call__(self, micro_batch: int) -> torch.Tensor:
        import torch

        start = micro_batch * self.batch_size
        picks = []
        for position in range(start, start + self.batch_size):
            picks.append(self._epoch(position // self.n)[position % self.n])
        return torch.stack(picks)


def _signature(ctx: PhaseContext, trainable: Trainable) -> dict[str, Any]:
    spec = ctx.train
    return {
        "phase": ctx.name,
        "data": getattr(ctx.data, "fingerprint", ""),
        "seed": ctx.seed,
        "batch_size": spec.batch_size,
        "grad_accum": spec.grad_accum,
        **trainable.signature,
    }


@dataclass
class _Progress:
    """Where the loop stands; saved in every checkpoint and restored on resume."""

    step: int = 0
    best_val: float | None = None  # best validation loss so far
    bad_evals: int = 0  # evaluations since the last improvement
    window_sum: float = 0.0  # train losses since the last evaluation, for its train_loss
    window_steps: int = 0
    skipped: int = 0  # steps skipped for a non-finite loss (skip_nonfinite)

    def record(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def improved(self, val_loss: float) -> bool:
        if self.best_val is None or val_loss < self.best_val:
            self.best_val, self.bad_evals = val_loss, 0
            return True
        self.bad_evals += 1
        return False


class _History:
    """Rows in memory and in ``history.jsonl`` (rewritten up to the resume step on resume;
    only when ``write``)."""

    def __init__(self, path: Path, resume_step: int | None, write: bool = True):
        self.path, self.write = path, write
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row.get("step", 0) <= resume_step:
                        self.rows.append(row)
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if not self.write:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def train(ctx: PhaseContext, model: torch.nn.Module, trainable: Trainable) -> LoopOutcome:
    """Train ``trainable.params`` of ``model`` (already set up by the phase) on ``ctx.data``,
    lean: a frozen head's loss without full logits, checkpointing when the phase asks for it."""
    from wake2vec.training.loss_head import lean_training

    with lean_training(model, ctx.train.gradient_checkpointing):
        return _train(ctx, model, trainable)


def _train(ctx: PhaseContext, model: torch.nn.Module, trainable: Trainable) -> LoopOutcome:
    """Train ``trainable.params`` of ``model`` (already set up by the phase) on ``ctx.data``.

    The logged ``train_loss`` is the summed token NLL of all micro-batches of an optimiser
    step divided by their token count: the true mean per token whatever ``grad_accum`` is
    (and however many processes share the batch).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from tqdm.auto import tqdm

    from wake2vec.training.optim import build_optimizer, build_scheduler

    spec = ctx.train
    set_seed(ctx.seed)
    # split_batches: each optimiser step consumes the recipe's global batch, so the schedule
    # advances once per step (not once per process)
    accelerator = Accelerator(
        gradient_accumulation_steps=spec.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    device = accelerator.device
    rank, world, main = (accelerator.process_index, accelerator.num_processes,
                         accelerator.is_main_process)
    sharded = str(accelerator.distributed_type).rsplit(".", 1)[-1]
    if sharded in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
        # the loop builds the optimiser before prepare() and saves the trainable tensors as
        # they are: both assume every process holds whole parameters (DDP), not shards
        raise TrainingError(
            f"phase {ctx.name}: accelerate is configured for {sharded}, which wake2vec does not "
            "support yet; launch with DDP (accelerate config: multi-GPU without FSDP or "
            "DeepSpeed, or accelerate launch --multi_gpu)"
        )
    if spec.batch_size < world:
        raise TrainingError(
            f"phase {ctx.name}: batch_size {spec.batch_size} is smaller than the {world} "
            "processes that share each batch; raise batch_size or launch fewer processes"
        )
    if getattr(model, "hf_device_map", None) is None and not getattr(model, "is_quantized", False):
        model.to(device)
    optimizer = build_optimizer(trainable.params, spec)
    scheduler = build_scheduler(optimizer, spec)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    bare_model = accelerator.unwrap_model(model)  # evaluation runs without DDP's collectives

    def reduce_sum(values: list[float]) -> list[float]:
        """Sum each value over the processes (in float64, like the Python floats summed)."""
        if world == 1:
            return values
        summed = accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=device), "sum")
        return [float(v) for v in summed.cpu()]

    train_blocks = ctx.data.train_tensor()
    val_blocks = ctx.data.val_tensor()
    val_bytes = list(ctx.data.val_blocks["n_bytes"])
    val_lengths = ctx.data.val_lengths()
    # each phase draws its own seeded order, so a later phase does not replay an earlier one's batches
    order = BatchOrder(len(train_blocks), spec.batch_size, f"{ctx.seed}-{ctx.order_key or ctx.name}")
    tokens_per_step = spec.batch_size * spec.grad_accum * (train_blocks.shape[1] - 1)
    root = ctx.out_dir / "checkpoints"
    signature = _signature(ctx, trainable)

    progress, resumed_from = _Progress(), None
    reload_check: tuple[Path, float] | None = None  # a restored checkpoint and its val_loss
    if main and not ctx.resume and root.exists():
        shutil.rmtree(root)  # checkpoints of an abandoned attempt would mislead resume
    accelerator.wait_for_everyone()
    if ctx.resume and ckpt.list_checkpoints(root):
        path = ckpt.list_checkpoints(root)[-1]
        tensors, optimizer_state, state = ckpt.load_checkpoint(path)
        if state.get("signature") != signature:
            raise TrainingError(
                f"{path}: this checkpoint was made with different settings "
                f"({state.get('signature')} vs {signature}); start the phase afresh instead of "
                "resuming"
            )
        trainable.load_state_tensors(tensors)
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(state["scheduler"])
        progress = _Progress(**state["progress"])
        resumed_from = progress.step
        if state.get("val_loss") is not None:
            reload_check = (path, state["val_loss"])

    def validate() -> dict[str, Any]:
        return evaluate(
            bare_model,
            val_blocks,
            val_bytes,
            spec.batch_size,
            len(ctx.tokenizer),
            spec.eval_batches,
            device,
            lengths=val_lengths,
            shard=(rank, world),
            reduce_sum=reduce_sum,
        )

    if reload_check is not None:
        _check_reload(validate(), *reload_check)
    if main:
        history = _History(ctx.out_dir / "history.jsonl", resumed_from)
    accelerator.wait_for_everyone()  # the others read what the main process kept
    if not main:
        history = _History(ctx.out_dir / "history.jsonl", resumed_from, write=False)

    def save(val_loss: float | None) -> Path:
        extra = {
            "signature": signature,
            "val_loss": val_loss,
            "progress": progress.record(),
            "micro_batches": progress.step * spec.grad_accum,
            "total_steps": spec.steps,
        }
        path = root / ckpt.checkpoint_name(progress.step)
        if main:
            path = ckpt.save_checkpoint(
                root, progress.step, trainable.state_tensors(), optimizer, scheduler, extra
            )
            ckpt.prune_checkpoints(root, spec.keep_last)
            ctx.events.checkpoint_saved(progress.step, path)
        accelerator.wait_for_everyone()  # nobody runs ahead of a checkpoint being written
        return path

    model.train()
    started = time.monotonic()
    last_eval: dict[str, Any] | None = None
    last_saved: Path | None = None
    # a resumed phase that had already stopped early stays stopped
    stopped_early = spec.patience is not None and progress.bad_evals >= spec.patience
    bar = tqdm(
        total=spec.steps,
        initial=progress.step,
        desc=f"phase {ctx.name}",
        file=sys.stderr,
        disable=not (main and sys.stderr.isatty()),
        dynamic_ncols=True,
    )
    snapshots = main and spec.snapshot_every > 0
    while progress.step < spec.steps and not stopped_early:
        step = progress.step
        nll_total, grad_norm, learning_rate = 0.0, None, None
        bad = False  # a micro-batch of this step had a non-finite loss: the step makes no update
        extras: dict[str, float] = {}
        for micro in range(spec.grad_accum):
            # this process's contiguous share of the global micro-batch
            picks = order(step * spec.grad_accum + micro).tensor_split(world)[rank]
            batch = train_blocks[picks].to(device)
            with accelerator.accumulate(model):
                nll, _ = token_nll(model, batch)
                # DDP averages gradients over the processes: scale each share by their number
                # so the average is the gradient of the global per-token mean
                loss = nll * world / tokens_per_step
                if (
                    trainable.extra_loss is not None
                ):  # a share per micro-batch: once per step in all
                    aux, extras = trainable.extra_loss(step)
                    loss = loss + aux / spec.grad_accum
                if not bad and not torch.isfinite(loss.detach()):
                    bad = _nonfinite(ctx.name, spec, progress.skipped, float(loss.detach()),
                                     step, micro)
                if world > 1 and spec.skip_nonfinite:  # every process skips the step, or none
                    bad = reduce_sum([float(bad)])[0] > 0
                if not bad:
                    # accelerate divides by the accumulation steps; the loss is already a share
                    accelerator.backward(loss * spec.grad_accum)
                    nll_total += float(nll.detach())
                if accelerator.sync_gradients:
                    learning_rate = optimizer.param_groups[0]["lr"]  # the rate this step uses
                    if spec.max_grad_norm > 0 and not bad:
                        norm = accelerator.clip_grad_norm_(trainable.params, spec.max_grad_norm)
                        grad_norm = float(norm)
                    if not bad:  # a skipped step leaves the rows and the optimiser state alone
                        optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
        progress.step = step = step + 1
        (nll_total,) = reduce_sum([nll_total])
        train_loss = None if bad else nll_total / tokens_per_step
        if bad:
            progress.skipped += 1
        else:
            progress.window_sum += train_loss
            progress.window_steps += 1
        history.add(
            {
                "step": step,
                "kind": "train",
                "train_loss": train_loss,
                "learning_rate": learning_rate,
                "grad_norm": grad_norm,
                "elapsed_s": round(time.monotonic() - started, 3),
                **extras,
                **({"skipped": "non-finite loss"} if bad else {}),
            }
        )
        bar.update(1)
        bar.set_postfix(loss="skipped" if bad else f"{train_loss:.4f}")
        if snapshots and step % spec.snapshot_every == 0:
            # a phase whose trainable tensors are not rows keeps none: stop asking after the first
            snapshots = ckpt.save_snapshot(ctx.out_dir / "snapshots", step,
                                           trainable.state_tensors(), keep=spec.snapshot_rows,
                                           seed=ctx.seed) is not None

        at_end = step >= spec.steps
        due_save = not spec.save_every or step % spec.save_every == 0
        if at_end or (spec.eval_every and step % spec.eval_every == 0):
            window = progress.window_sum / progress.window_steps if progress.window_steps else None
            metrics = {"train_loss": window, **validate()}
            previous = next((r for r in reversed(history.rows) if r.get("kind") == "eval"), None)
            if previous is None and ctx.start_eval:  # the first: against where the phase began
                first = next((r for r in history.rows if r.get("kind") == "train"), {})
                previous = {**ctx.start_eval, "train_loss": first.get("train_loss")}
            metrics["regime"] = regime(previous, metrics)
            if metrics["regime"] == FRIED:
                log.warning("phase %s step %d: training and validation loss both rose (%s): the "
                            "learning rate may be too high", ctx.name, step, "fried")
            progress.window_sum, progress.window_steps = 0.0, 0
            history.add({"step": step, "kind": "eval", **metrics})
            if main:
                ctx.events.evaluation(step, metrics)
            last_eval = metrics
            if not progress.improved(metrics["val_loss"]):
                stopped_early = spec.patience is not None and progress.bad_evals >= spec.patience
            if due_save or at_end or stopped_early:
                last_saved = save(metrics["val_loss"])
        elif spec.save_every and due_save:
            last_saved = save(None)
    bar.close()
    accelerator.wait_for_everyone()

    if last_eval is None:  # resumed at the very end: evaluate what was restored
        last_eval = {"train_loss": None, **validate()}
    last = ckpt.list_checkpoints(root)
    best = ckpt.best_checkpoint(root)
    last_eval = dict(last_eval, handed_on="last", handed_on_step=progress.step)
    if spec.skip_nonfinite:
        last_eval["skipped_batches"] = progress.skipped
    if ctx.hand_on == "best" and best is not None and best != (last_saved or (last[-1] if last else None)):
        from safetensors.torch import load_file

        best_state = ckpt.read_state(best)
        trainable.load_state_tensors(load_file(str(best / "trainable.safetensors")))
        last_eval.update(handed_on="best", handed_on_step=best_state["progress"]["step"],
                         handed_on_val_loss=best_state.get("val_loss"))
    return LoopOutcome(
        metrics=last_eval,
        history=history.rows,
        step=progress.step,
        stopped_early=stopped_early,
        best_checkpoint=best,
        last_checkpoint=last_saved or (last[-1] if last else None),
        resumed_from=resumed_from,
    )


def _check_reload(again: dict[str, Any], path: Path, saved: float) -> None:
    """A restored checkpoint must reproduce the validation loss it was saved with."""
    if abs(again["val_loss"] - saved) > 1e-4 * max(1.0, abs(saved)):
        raise TrainingError(
            f"{path}: the restored rows give validation loss {again['val_loss']:.6f}, but the "
            f"checkpoint was saved at {saved:.6f}; the model it is applied to is not the one it "
            "was trained on"
        )


def _nonfinite(name: str, spec: Any, skipped: int, value: float, step: int, micro: int) -> bool:
    """A non-finite training loss: True (skip the step) while under ``skip_nonfinite``, else
    stop the phase with :class:`TrainingError` (its checkpoints stay as they are)."""
    where = f"at step {step + 1} (micro-batch {micro + 1} of {spec.grad_accum})"
    if skipped < spec.skip_nonfinite:
        log.warning("phase %s: the training loss became %s %s; skipping the step (%d of at most "
                    "%d, skip_nonfinite)", name, value, where, skipped + 1, spec.skip_nonfinite)
        return True
    if spec.skip_nonfinite:
        cause = (f"{skipped} steps were skipped already, the cap set by skip_nonfinite = "
                 f"{spec.skip_nonfinite}")
    else:
        cause = "skip_nonfinite is 0 (set it to skip up to N such batches)"
    raise TrainingError(
        f"phase {name}: the training loss became {value} {where} and {cause}; the phase stops "
        f"with its last checkpoint kept; lower the learning rate (now {spec.learning_rate}) or "
        "check the new rows' initialisation"
    )
