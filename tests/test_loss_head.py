"""A frozen head's loss without the full-vocabulary logits, and gradient checkpointing: the same
loss and gradients as the plain path, and the model as it was afterwards."""

from __future__ import annotations

import pytest
import torch
from helpers_training import tiny_model

from wake2vec.training.evaluate import token_nll
from wake2vec.training.loss_head import CHUNK_LOGITS, LossHead, frozen_loss_head, lean_training


def _lora(tied: bool):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(300, tied=tied, seed=3)
    for p in model.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _loss_and_grads(model, batch, lengths=None):
    model.zero_grad(set_to_none=True)
    nll, count = token_nll(model, batch, lengths)
    nll.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(nll), count, grads


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_lean_training_gives_the_plain_loss_and_gradients(tied, checkpointing, monkeypatch):
    monkeypatch.setattr("wake2vec.training.loss_head.CHUNK_LOGITS", 300 * 5)  # several chunks
    model = _lora(tied)
    model.train()
    batch = torch.randint(0, 300, (3, 17), generator=torch.Generator().manual_seed(1))
    lengths = [17, 9, 17]  # the second row is padded: its padding predicts nothing
    plain, count, grads = _loss_and_grads(model, batch, lengths)
    head = model.get_base_model().lm_head
    with lean_training(model, checkpointing):
        assert isinstance(model.get_base_model().lm_head, LossHead)
        assert checkpointing == any(getattr(m, "gradient_checkpointing", False)
                                    for m in model.modules())
        lean, lean_count, lean_grads = _loss_and_grads(model, batch, lengths)
    assert model.get_base_model().lm_head is head  # the same module back
    if tied:
        assert head.weight is model.get_base_model().model.embed_tokens.weight
    assert lean_count == count == 2 * 16 + 8
    assert lean == pytest.approx(plain, rel=1e-5)
    assert grads.keys() == lean_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(lean_grads[name], grad, rtol=1e-4, atol=1e-6)
    # checkpointing is off again afterwards
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def test_a_trainable_head_is_left_alone():
    model = tiny_model(300, tied=False, seed=3)
    with frozen_loss_head(model) as wrapper:
        assert wrapper is None and isinstance(model.lm_head, torch.nn.Linear)


def test_without_grad_it_only_sums_the_loss():
    model = tiny_model(300, tied=True, seed=3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    batch = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain, _ = token_nll(model, batch)
        with frozen_loss_head(model):
            lean, _ = token_nll(model, batch)
    assert float(lean) == pytest.approx(float(plain), rel=1e-5)
    assert CHUNK_LOGITS >= 1 << 20
