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
    trains_new_rows_only = True

    def run(self, ctx: PhaseContext) -> PhaseResult:
        import torch

        from wake2vec.training.phase_common import phase_result, train_new_rows

        if not ctx.regularizers:
            raise UserInputError(
                f"phases[{ctx.index}].regularizers: morpheme-alignment needs at least one "
                "regularizer (e.g. regularizers = [{name = \"morpheme\", weight = 0.1}])")
        base_rows = ctx.model.get_input_embeddings().weight.detach()[: ctx.base_vocab_size].float()
        word_of = dict(zip(ctx.new_ids, ctx.new_words, strict=False))

        def make_extra_loss(handles):
            words = [word_of.get(i, "") for i in handles.new_ids]
            initial = handles.input_rows.detach().clone()

            def extra_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
                reg_ctx = RegularizerContext(
                    new_rows=handles.input_rows, base_rows=base_rows, new_words=words,
                    new_ids=handles.new_ids, morphology=ctx.morphology, initial_new_rows=initial,
                    step=step)
                total = handles.input_rows.new_zeros(())
                parts: dict[str, float] = {}
                for regularizer, weight in ctx.regularizers:
                    value = regularizer.loss(reg_ctx)
                    weighted = value * weight
                    grad_norm = 0.0
                    if weighted.requires_grad:
                        (grad,) = torch.autograd.grad(weighted, handles.input_rows,
                                                      retain_graph=True, allow_unused=True)
                        grad_norm = 0.0 if grad is None else float(grad.norm())
                    parts[f"reg_{regularizer.name}"] = float(value.detach())
                    parts[f"reg_{regularizer.name}_grad_norm"] = grad_norm
                    total = total + weighted
                return total, parts

            return extra_loss

        model, outcome = train_new_rows(
            ctx, make_extra_loss,
            signature={"regularizers": [[r.name, w] for r, w in ctx.regularizers]})
        return phase_result(ctx, model, outcome, metrics=_gradient_shares(outcome.history))


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
