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
    trains_new_rows_only = True

    def run(self, ctx: PhaseContext) -> PhaseResult:
        from wake2vec.training.phase_common import phase_result, train_new_rows

        model, outcome = train_new_rows(ctx)
        return phase_result(ctx, model, outcome)


@hookimpl
def wake2vec_register_phases() -> list[type]:
    return [EmbedOnly]
