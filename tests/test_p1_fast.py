"""The fast P1 head: the chunked NLL of the split head equals plain full-vocabulary cross-entropy,
in value and in gradients, wherever it is used; models that change logits after the head keep
the plain path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers_training import build_setup, tiny_model

from wake2vec.training.evaluate import token_nll
from wake2vec.training.head import RowHead
from wake2vec.training.rowmap import RowMap
from wake2vec.training.rows import attach_rows, detach_rows


def _plain(head: RowHead, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head._logits(hidden)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100,
        reduction="sum",
    )


def _head(vocab: int, hidden: int, new_ids: list[int], bias: bool, dtype=torch.float32,
          aliases: dict[int, int] | None = None, shift: bool = False):
    torch.manual_seed(0)
    base = torch.nn.Linear(hidden, vocab, bias=bias).to(dtype)
    base.requires_grad_(False)
    rowmap = RowMap.build([i for i in new_ids if i not in (aliases or {})], aliases)
    rows = torch.nn.Parameter(torch.randn(len(rowmap.row_ids), hidden) * 0.5)
    return RowHead(base, rowmap, rows, torch.randn(hidden) if shift else None)


# every other id of 40..59 the second spelling of the id before it: 10 rows for 20 ids
PAIRED = {i + 1: i for i in range(40, 60, 2)}


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    ("new_ids", "aliases", "shift"),
    [(list(range(40, 60)), None, False), (list(range(0, 10)), None, False),
     ([3, 17, 18, 41, 59], None, False), (list(range(40, 60)), PAIRED, False),
     ([3, 17, 18, 41, 59], {18: 3, 59: 41}, False), (list(range(40, 60)), PAIRED, True),
     ([3, 17, 18, 41, 59], {18: 3, 59: 41}, True)],
    ids=["contiguous-end", "contiguous-start", "scattered", "paired", "scattered-paired",
         "paired-shifted", "scattered-paired-shifted"],
)
@pytest.mark.parametrize("chunk", [0, 3])
def test_chunked_nll_and_gradients_equal_plain_cross_entropy(new_ids, aliases, shift, bias, chunk):
    head = _head(60, 16, new_ids, bias, aliases=aliases, shift=shift)
    targets = torch.randint(0, 60, (3, 7))
    targets[:, -1] = -100
    targets[1, 2] = -100
    targets[0, :3] = torch.tensor(new_ids[:3])  # new tokens among the targets
    hidden = torch.randn(3, 7, 16, requires_grad=True)

    expected = _plain(head, hidden, targets)
    want_h, want_r = torch.autograd.grad(expected, [hidden, head.rows])
    found = head.nll(hidden, targets, chunk_tokens=chunk)
    got_h, got_r = torch.autograd.grad(found * 2.5, [hidden, head.rows])

    assert found.dtype == torch.float32
    assert torch.allclose(found, expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(got_h, 2.5 * want_h, rtol=1e-4, atol=1e-5)  # incoming gradient scales
    assert torch.allclose(got_r, 2.5 * want_r, rtol=1e-4, atol=1e-5)
    assert got_r.abs().sum() > 0


def test_without_grad_the_nll_is_computed_and_nothing_is_kept():
    head = _head(60, 16, list(range(40, 60)), False)
    hidden, targets = torch.randn(2, 5, 16), torch.randint(0, 60, (2, 5))
    with torch.no_grad():
        found = head.nll(hidden, targets, chunk_tokens=4)
    assert not found.requires_grad
    assert torch.allclose(found, _plain(head, hidden, targets).detach(), rtol=1e-5)


def test_bf16_head_computes_in_bf16_and_stays_close_with_fp32_row_gradients():
    head = _head(60, 16, list(range(40, 60)), False, dtype=torch.bfloat16)
    with torch.no_grad():
        head.rows.mul_(0.1)
    hidden = torch.randn(4, 9, 16, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 60, (4, 9))
    reference = _head(60, 16, list(range(40, 60)), False)
    with torch.no_grad():
        reference.base.weight.copy_(head.base.weight.float())
        reference.rows.copy_(head.rows)
    hidden32 = hidden.detach().float().requires_grad_(True)
    expected = _plain(reference, hidden32, targets)
    want_r = torch.autograd.grad(expected, reference.rows)[0]
    found = head.nll(hidden, targets)
    got_h, got_r = torch.autograd.grad(found, [hidden, head.rows])
    assert got_h.dtype == torch.bfloat16 and got_r.dtype == torch.float32
    assert abs(float(found.detach()) - float(expected)) < 0.01 * float(expected)
    assert torch.allclose(got_r, want_r, rtol=0.05, atol=0.02 * float(want_r.abs().max()))


@pytest.mark.parametrize("tied", [True, False])
def test_token_nll_takes_the_chunked_path_and_matches_the_models_own_logits(tmp_path, tied):
    setup = build_setup(tmp_path, tied=tied)
    model = setup.model
    batch = setup.data.train_tensor()[:3]
    with torch.no_grad():  # perturb the new rows so they matter
        model.get_input_embeddings().weight[setup.new_ids] += 0.3
    handles = attach_rows(model, setup.new_ids, tied)
    head = model.get_output_embeddings()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    nll, count = token_nll(model, batch)
    assert head.fusable is True  # the Llama hands the head's output on unchanged
    assert torch.equal(torch.get_rng_state(), state)  # the probe draws no random numbers
    nll.backward()
    fused_grads = [p.grad.clone() for p in handles.parameters()]
    for p in handles.parameters():
        p.grad = None
    head.fusable = False  # force the plain path on the same wrapped model
    plain, count2 = token_nll(model, batch)
    plain.backward()
    assert count == count2 == batch.shape[0] * (batch.shape[1] - 1)
    assert torch.allclose(nll, plain, rtol=1e-5)
    for got, p in zip(fused_grads, handles.parameters(), strict=True):
        assert torch.allclose(got, p.grad, rtol=1e-4, atol=1e-6)
    detach_rows(model, handles)
    # and the unwrapped model, with the rows written back, gives the same loss
    with torch.no_grad():
        again, _ = token_nll(model, batch)
    assert torch.allclose(again, nll.detach(), rtol=1e-5)


class _ScaledLlama(torch.nn.Module):
    """A model that scales the head's logits afterwards (as soft-capping models do)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, input_ids, use_cache=False):
        out = self.inner(input_ids=input_ids, use_cache=use_cache)
        out.logits = out.logits * 0.5
        return out


def test_a_model_that_changes_logits_after_the_head_keeps_the_plain_path():
    model = tiny_model(50, tied=False)
    handles = attach_rows(model, list(range(40, 50)), tied=False)
    wrapped = _ScaledLlama(model)
    batch = torch.randint(0, 50, (2, 6))
    nll, _ = token_nll(wrapped, batch)
    assert model.get_output_embeddings().fusable is False
    logits = model(input_ids=batch).logits * 0.5
    targets = batch.roll(-1, dims=1)
    targets[:, -1] = -100
    expected = F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1), reduction="sum")
    assert torch.allclose(nll, expected, rtol=1e-5)
    detach_rows(model, handles)


@pytest.mark.parametrize("tied", [True, False])
def test_staged_rows_are_put_back_when_a_phase_fails_and_written_when_it_ends(tmp_path, tied):
    setup = build_setup(tmp_path, tied=tied)
    model = setup.model
    before = model.get_output_embeddings().weight.detach().clone()
    handles = attach_rows(model, setup.new_ids, tied)
    with torch.no_grad():
        handles.parameters()[-1].add_(0.5)  # the head's rows move away from the matrix
    token_nll(model, setup.data.train_tensor()[:2])  # stages them into the frozen matrix
    staged = model.get_output_embeddings().weight.detach()
    assert not torch.equal(staged[setup.new_ids], before[setup.new_ids])
    detach_rows(model, handles, write_back=False)
    assert torch.equal(model.get_output_embeddings().weight, before)  # as found

    handles = attach_rows(model, setup.new_ids, tied)
    with torch.no_grad():
        handles.parameters()[-1].add_(0.5)
    token_nll(model, setup.data.train_tensor()[:2])
    detach_rows(model, handles)
    after = model.get_output_embeddings().weight
    assert torch.equal(after[setup.new_ids], handles.parameters()[-1].detach())
    assert torch.equal(after[: setup.base_vocab_size], before[: setup.base_vocab_size])


def test_adamw_uses_the_fused_kernel_for_fp32_rows_and_updates_like_the_plain_one():
    from helpers_training import phase_spec

    from wake2vec.training.optim import build_optimizer

    torch.manual_seed(0)
    start = torch.randn(50, 8)
    fused_p, plain_p = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    fused = build_optimizer([fused_p], phase_spec(optimizer="adamw", weight_decay=0.01))
    plain = torch.optim.AdamW([plain_p], lr=fused.defaults["lr"], weight_decay=0.01)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        grad = torch.randn(50, 8)
        fused_p.grad, plain_p.grad = grad.clone(), grad.clone()
        fused.step()
        plain.step()
    assert not torch.equal(fused_p, start)
    assert torch.allclose(fused_p, plain_p, atol=1e-6)
    assert set(fused.state_dict()["state"][0]) == set(plain.state_dict()["state"][0])


def test_an_alias_logit_is_its_owner_logit_plus_the_shift_product():
    """Two spellings of a word share one row; their logits differ by exactly h . shift, so the
    head splits the word's probability between them by the hidden state."""
    head = _head(60, 16, list(range(40, 60)), False, aliases=PAIRED, shift=True)
    hidden = torch.randn(3, 5, 16)
    logits = head._logits(hidden)
    for alias, owner in PAIRED.items():
        expected = hidden @ head.shift
        assert torch.allclose(logits[..., alias] - logits[..., owner], expected, atol=1e-5)
    # no shift: the two spellings get the same logit
    plain = _head(60, 16, list(range(40, 60)), False, aliases=PAIRED)._logits(hidden)
    assert torch.equal(plain[..., 41], plain[..., 40])
