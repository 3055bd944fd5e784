"""The embedding-only phase (P1): only the new rows train; everything else stays bit-identical."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wake2vec import hookimpl
from wake2vec.api import PhaseResult, PhaseStrategy

if TYPE_CHECKING:
    from wake2vec.api import PhaseContext


class EmbedOnly(PhaseStrategy):
    """P1: train only the new embedding rows; the transformer and every base row stay bit-identical"""

    name = "embed-only"

    def run(self, ctx: PhaseContext) -> PhaseResult:
        from wake2vec.training.loop import Trainable, train
        from wake2vec.training.rows import attach_rows, detach_rows

        model = ctx.model
        handles = attach_rows(model, ctx.new_ids, ctx.tied)
        trainable = Trainable(
            params=handles.parameters(),
            state_tensors=handles.state_tensors,
            load_state_tensors=handles.load_state_tensors,
            signature={
                "new_ids": len(handles.new_ids),
                "first_new_id": handles.new_ids[0],
                "last_new_id": handles.new_ids[-1],
                "tied": bool(ctx.tied),
            },
        )
        try:
            outcome = train(ctx, model, trainable)
        except BaseException:
            # never leave the model wrapped; keep its pre-phase rows (checkpoints hold progress)
            detach_rows(model, handles, write_back=False)
            raise
        model = detach_rows(model, handles)
        artefacts = {"history": str(ctx.out_dir / "history.jsonl")}
        if outcome.best_checkpoint is not None:
            artefacts["best_checkpoint"] = str(outcome.best_checkpoint)
        if outcome.last_checkpoint is not None:
            artefacts["last_checkpoint"] = str(outcome.last_checkpoint)
        metrics = {**outcome.metrics, "steps": outcome.step, "stopped_early": outcome.stopped_early}
        if outcome.resumed_from is not None:
            metrics["resumed_from"] = outcome.resumed_from
        return PhaseResult(
            model=model, metrics=metrics, history=outcome.history, artefacts=artefacts
        )


@hookimpl
def wake2vec_register_phases() -> list[type]:
    return [EmbedOnly]
