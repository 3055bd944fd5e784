"""The morpheme-alignment phase (P3): new rows train again under auxiliary losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wake2vec import hookimpl
from wake2vec.api import PhaseResult, PhaseStrategy, RegularizerContext
from wake2vec.errors import UserInputError

if TYPE_CHECKING:
    from wake2vec.api import PhaseContext


class MorphemeAlignment(PhaseStrategy):
    """P3: new rows train again with the LM loss plus weighted regulariser losses."""

    name = "morpheme-alignment"

    def run(self, ctx: PhaseContext) -> PhaseResult:
        import torch

        from wake2vec.training.loop import Trainable, train
        from wake2vec.training.rows import attach_rows, detach_rows

        if not ctx.regularizers:
            raise UserInputError(
                f"phases[{ctx.index}].regularizers: morpheme-alignment needs at least one "
                "regularizer (e.g. regularizers = [{name = \"morpheme\", weight = 0.1}])")
        model = ctx.model
        handles = attach_rows(model, ctx.new_ids, ctx.tied)
        word_of = dict(zip(ctx.new_ids, ctx.new_words, strict=False))
        words = [word_of.get(i, "") for i in handles.new_ids]
        base_rows = handles.original_input.weight.detach()[: ctx.base_vocab_size].float()
        initial = handles.input_rows.detach().clone()

        def extra_loss() -> tuple[torch.Tensor, dict[str, float]]:
            reg_ctx = RegularizerContext(
                new_rows=handles.input_rows, base_rows=base_rows, new_words=words,
                new_ids=handles.new_ids, morphology=ctx.morphology, initial_new_rows=initial)
            total = handles.input_rows.new_zeros(())
            parts: dict[str, float] = {}
            for regularizer, weight in ctx.regularizers:
                value = regularizer.loss(reg_ctx)
                weighted = value * weight
                if weighted.requires_grad:
                    (grad,) = torch.autograd.grad(weighted, handles.input_rows, retain_graph=True,
                                                  allow_unused=True)
                    grad_norm = 0.0 if grad is None else float(grad.norm())
                else:
                    grad_norm = 0.0
                parts[f"reg_{regularizer.name}"] = float(value.detach())
                parts[f"reg_{regularizer.name}_grad_norm"] = grad_norm
                total = total + weighted
            return total, parts

        trainable = Trainable(
            params=handles.parameters(), state_tensors=handles.state_tensors,
            load_state_tensors=handles.load_state_tensors, extra_loss=extra_loss,
            signature={"new_ids": len(handles.new_ids), "tied": bool(ctx.tied),
                       "regularizers": [[r.name, w] for r, w in ctx.regularizers]})
        try:
            outcome = train(ctx, model, trainable)
        except BaseException:
            detach_rows(model, handles, write_back=False)
            raise
        model = detach_rows(model, handles)
        metrics = {**outcome.metrics, "steps": outcome.step, "stopped_early": outcome.stopped_early,
                   **_gradient_shares(outcome.history)}
        if outcome.resumed_from is not None:
            metrics["resumed_from"] = outcome.resumed_from
        artefacts = {"history": str(ctx.out_dir / "history.jsonl")}
        if outcome.best_checkpoint is not None:
            artefacts["best_checkpoint"] = str(outcome.best_checkpoint)
        return PhaseResult(model=model, metrics=metrics, history=outcome.history, artefacts=artefacts)


def _gradient_shares(history: list[dict]) -> dict[str, float]:
    """Mean value of each regulariser and its mean gradient norm as a share of the step's
    total gradient norm (before clipping)."""
    rows = [r for r in history if r.get("kind") == "train" and r.get("grad_norm")]
    out: dict[str, float] = {}
    if not rows:
        return out
    names = sorted({k[4:-10] for r in rows for k in r if k.startswith("reg_") and k.endswith("_grad_norm")})
    for name in names:
        out[f"reg_{name}_mean"] = sum(r.get(f"reg_{name}", 0.0) for r in rows) / len(rows)
        out[f"reg_{name}_grad_share"] = sum(
            r.get(f"reg_{name}_grad_norm", 0.0) / r["grad_norm"] for r in rows) / len(rows)
    return out


@hookimpl
def wake2vec_register_phases() -> list[type]:
    return [MorphemeAlignment]
