"""The LoRA phase (P2): adapters on the family's projections; every embedding row frozen."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from pydantic import Field

from wake2vec import hookimpl
from wake2vec.api import Params, PhaseResult, PhaseStrategy
from wake2vec.errors import UserInputError

if TYPE_CHECKING:
    from wake2vec.api import PhaseContext

log = logging.getLogger("wake2vec")


def adapter_update_norms(model) -> dict[str, float]:
    """Frobenius norm of each adapter's weight update (scaling * B @ A), by module name."""
    import torch

    norms: dict[str, float] = {}
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        if not lora_a or not lora_b:
            continue
        for adapter in lora_a:
            a = lora_a[adapter].weight.detach().float()
            b = lora_b[adapter].weight.detach().float()
            scale = module.scaling[adapter]
            with torch.no_grad():
                norms[name] = float(torch.linalg.matrix_norm(b @ a) * scale)
    return norms


def summarise_norms(norms: dict[str, float]) -> dict[str, float]:
    values = list(norms.values()) or [0.0]
    return {
        "adapter_update_norm_mean": sum(values) / len(values),
        "adapter_update_norm_max": max(values),
        "adapter_update_norm_min": min(values),
        "adapter_modules": len(norms),
    }


class Lora(PhaseStrategy):
    """P2: LoRA adapters on attention and MLP projections; new and base rows stay frozen."""

    name = "lora"

    class Params(Params):
        r: int = Field(default=8, ge=1, le=1024)
        alpha: float = Field(default=16.0, gt=0)
        dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
        targets: list[str] | None = Field(
            default=None, description="module names; default: the model family's LoRA targets")
        merge: bool = Field(
            default=True, description="merge the adapters into the weights when the phase ends")

    def run(self, ctx: PhaseContext) -> PhaseResult:
        import torch
        from peft import (
            LoraConfig,
            get_peft_model,
            get_peft_model_state_dict,
            set_peft_model_state_dict,
        )

        from wake2vec.training.loop import Trainable, train
        from wake2vec.training.parallel import is_main_process
        from wake2vec.training.phase_common import phase_result

        targets = list(self.params.targets or ctx.lora_targets)
        if not targets:
            raise UserInputError(
                f"phases[{ctx.index}].params.targets: the model family names no LoRA target modules; "
                "list them (e.g. [\"q_proj\", \"v_proj\"])")
        present = {name.rsplit(".", 1)[-1] for name, _ in ctx.model.named_modules()}
        missing = [t for t in targets if t not in present]
        if missing:
            raise UserInputError(
                f"phases[{ctx.index}].params.targets: the model has no modules named {missing}")
        for p in ctx.model.parameters():
            p.requires_grad_(False)
        config = LoraConfig(r=self.params.r, lora_alpha=self.params.alpha,
                            lora_dropout=self.params.dropout, target_modules=targets,
                            task_type="CAUSAL_LM")
        model = get_peft_model(ctx.model, config)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

        def state_tensors() -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone().contiguous()
                    for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}

        def load_state_tensors(tensors: dict[str, torch.Tensor]) -> None:
            set_peft_model_state_dict(model, tensors)

        trainable = Trainable(
            params=[p for _, p in named], state_tensors=state_tensors,
            load_state_tensors=load_state_tensors,
            signature={"lora_r": self.params.r, "targets": sorted(targets),
                       "trainable_tensors": len(named)})
        outcome = train(ctx, model, trainable)
        norms = adapter_update_norms(model)
        summary = summarise_norms(norms)
        if summary["adapter_update_norm_max"] == 0.0:
            log.warning("phase %s: the LoRA adapters did not change (update norm 0); check the "
                        "learning rate and the target modules", ctx.name)
        adapter_dir = ctx.out_dir / "adapter"
        if is_main_process():  # one writer under accelerate launch
            model.save_pretrained(adapter_dir, save_embedding_layers=False)
            (ctx.out_dir / "adapter_norms.json").write_text(
                json.dumps(norms, indent=2), encoding="utf-8")
        result_model = model.merge_and_unload() if self.params.merge else model
        return phase_result(ctx, result_model, outcome, metrics=summary,
                            artefacts={"adapter": str(adapter_dir)})

    def restore(self, ctx: PhaseContext):
        from peft import PeftModel

        adapter_dir = ctx.out_dir / "adapter"
        model = PeftModel.from_pretrained(ctx.model, adapter_dir)
        return model.merge_and_unload() if self.params.merge else model


@hookimpl
def wake2vec_register_phases() -> list[type]:
    return [Lora]
