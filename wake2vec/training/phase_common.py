"""What the built-in phases share: training the new rows, and packaging a loop's outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wake2vec.api import PhaseResult

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from wake2vec.api import PhaseContext
    from wake2vec.training.loop import LoopOutcome
    from wake2vec.training.rows import RowHandles

ExtraLoss = Callable[[int], "tuple[torch.Tensor, dict[str, float]]"]  # step -> loss, parts


def train_new_rows(
    ctx: PhaseContext,
    make_extra_loss: Callable[[RowHandles], ExtraLoss] | None = None,
    signature: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, LoopOutcome]:
    """Train only the new rows of ``ctx.model`` (fp32, base rows untouched), optionally with an
    auxiliary loss built from the installed row handles; returns the unwrapped model."""
    from wake2vec.training.loop import Trainable, train
    from wake2vec.training.rows import attach_rows, detach_rows

    model = ctx.model
    handles = attach_rows(model, ctx.new_ids, ctx.tied, ctx.aliases, ctx.alias_shift)
    trainable = Trainable(
        params=handles.parameters(),
        state_tensors=handles.state_tensors,
        load_state_tensors=handles.load_state_tensors,
        extra_loss=make_extra_loss(handles) if make_extra_loss is not None else None,
        signature={
            "new_ids": len(handles.new_ids),
            **({"alias_ids": len(ctx.aliases)} if ctx.aliases else {}),
            "first_new_id": handles.new_ids[0],
            "last_new_id": handles.new_ids[-1],
            "tied": bool(ctx.tied),
            **(signature or {}),
        },
    )
    try:
        outcome = train(ctx, model, trainable)
    except BaseException:
        # never leave the model wrapped; keep its pre-phase rows (checkpoints hold progress)
        detach_rows(model, handles, write_back=False)
        raise
    return detach_rows(model, handles), outcome


def phase_result(
    ctx: PhaseContext,
    model: PreTrainedModel,
    outcome: LoopOutcome,
    metrics: dict[str, Any] | None = None,
    artefacts: dict[str, str] | None = None,
) -> PhaseResult:
    """The phase's result: the loop's final evaluation plus ``metrics``; history and checkpoint
    paths plus ``artefacts``."""
    found = {"history": str(ctx.out_dir / "history.jsonl")}
    if outcome.best_checkpoint is not None:
        found["best_checkpoint"] = str(outcome.best_checkpoint)
    if outcome.last_checkpoint is not None:
        found["last_checkpoint"] = str(outcome.last_checkpoint)
    values = {**outcome.metrics, "steps": outcome.step, "stopped_early": outcome.stopped_early,
              **(metrics or {})}
    if outcome.resumed_from is not None:
        values["resumed_from"] = outcome.resumed_from
    return PhaseResult(model=model, metrics=values, history=outcome.history,
                       artefacts={**found, **(artefacts or {})})
