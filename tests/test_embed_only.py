"""The embedding-only phase: only new rows train, losses are honest, checkpoints resume exactly."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers_training import NEW_WORDS, build_setup, make_ctx, snapshot
from safetensors.torch import load_file
from wake2vec_plugins.phases.embed_only import EmbedOnly

from wake2vec.errors import TrainingError
from wake2vec.training.rows import attach_rows, detach_rows


def _assert_only_new_rows_changed(before, after, base_vocab_size, new_ids, vocab_rows):
    changed_new = False
    for name, old in before.items():
        new = after[name]
        if old.shape[0] == vocab_rows and old.dim() == 2:
            assert torch.equal(old[:base_vocab_size], new[:base_vocab_size]), (
                f"{name}: base rows changed"
            )
            changed_new |= not torch.equal(old[new_ids], new[new_ids])
        else:
            assert torch.equal(old, new), f"{name} changed"
    assert changed_new, "the new rows did not train"


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
@pytest.mark.parametrize("tied", [True, False])
def test_only_new_rows_change_even_with_weight_decay(tmp_path, tied, optimizer):
    setup = build_setup(tmp_path, tied=tied)
    before = snapshot(setup.model)
    ctx = make_ctx(
        setup, tmp_path / "p1", steps=5, optimizer=optimizer, weight_decay=0.01, learning_rate=1e-2
    )
    result = EmbedOnly().run(ctx)
    model = result.model
    assert type(model.get_input_embeddings()) is torch.nn.Embedding  # wrappers are gone
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    after = snapshot(model)
    assert set(after) == set(before)
    _assert_only_new_rows_changed(
        before, after, setup.base_vocab_size, setup.new_ids, len(setup.tokenizer)
    )
    if not tied:  # the untied head's own new rows trained too
        assert not torch.equal(
            before["lm_head.weight"][setup.new_ids], after["lm_head.weight"][setup.new_ids]
        )
    assert all(p.requires_grad for p in model.parameters())  # flags restored as found
    rows = load_file(str(ctx.events.checkpoints[-1][1] / "trainable.safetensors"))
    assert rows["ids"].tolist() == setup.new_ids
    assert torch.equal(rows["input"], after["model.embed_tokens.weight"][setup.new_ids])
    assert ("output" in rows) == (not tied)


def test_bf16_body_trains_fp32_rows_and_keeps_base_rows(tmp_path):
    setup = build_setup(tmp_path, tied=False, dtype=torch.bfloat16)
    model = setup.model
    before = snapshot(model)
    handles = attach_rows(model, setup.new_ids, tied=False)
    assert all(p.dtype == torch.float32 for p in handles.parameters())
    assert [p for p in model.parameters() if p.requires_grad] == handles.parameters()
    detach_rows(model, handles)
    ctx = make_ctx(setup, tmp_path / "p1", steps=4, learning_rate=1e-2, weight_decay=0.01)
    result = EmbedOnly().run(ctx)
    after = snapshot(result.model)
    _assert_only_new_rows_changed(
        before, after, setup.base_vocab_size, setup.new_ids, len(setup.tokenizer)
    )
    checkpoint = ctx.events.checkpoints[-1][1]
    saved = load_file(str(checkpoint / "trainable.safetensors"))
    assert saved["input"].dtype == torch.float32 and saved["output"].dtype == torch.float32
    optimizer_state = load_file(str(checkpoint / "optimizer.safetensors"))
    assert {t.dtype for k, t in optimizer_state.items() if "exp_avg" in k} == {torch.float32}
    # fp32 rows keep updates a bf16 matrix would round away; the model gets them rounded once
    assert not torch.equal(saved["input"], saved["input"].bfloat16().float())


def test_train_loss_falls_on_a_repetitive_text(tmp_path):
    text = "\n\n".join(
        " ".join(NEW_WORDS[(i + j) % len(NEW_WORDS)] for j in range(12)) for i in range(80)
    )
    setup = build_setup(tmp_path, tied=False, text=text)
    ctx = make_ctx(setup, tmp_path / "p1", steps=30, learning_rate=5e-2, batch_size=4)
    result = EmbedOnly().run(ctx)
    losses = [r["train_loss"] for r in result.history if r["kind"] == "train"]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2
    assert losses[-1] < losses[0] - 0.5
    assert result.metrics["val_loss"] < result.metrics["uniform_loss"] - 0.5


def test_logged_loss_and_gradient_are_the_true_mean_under_accumulation(tmp_path):
    setup = build_setup(tmp_path, tied=False)
    blocks = setup.data.train_tensor()[:8]
    # keep exactly one optimiser step's worth of blocks: step 1 sees every one of them
    setup.data.train_blocks = setup.data.train_blocks.select(range(8))
    handles = attach_rows(setup.model, setup.new_ids, tied=False)
    logits = setup.model(blocks).logits[:, :-1].float()
    reference = (
        F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1), reduction="sum"
        )
        / blocks[:, 1:].numel()
    )
    reference.backward()
    grad_norm = torch.linalg.vector_norm(
        torch.cat([p.grad.flatten() for p in handles.parameters()])
    )
    detach_rows(setup.model, handles, write_back=False)

    ctx = make_ctx(setup, tmp_path / "p1", steps=1, batch_size=2, grad_accum=4, max_grad_norm=1e6)
    result = EmbedOnly().run(ctx)
    logged = [r for r in result.history if r["kind"] == "train"][0]
    assert logged["train_loss"] == pytest.approx(reference.item(), rel=1e-5)
    assert logged["grad_norm"] == pytest.approx(float(grad_norm), rel=1e-4)
    assert ctx.events.evaluations[0]["train_loss"] == pytest.approx(reference.item(), rel=1e-5)


def test_adamw8bit_keeps_base_rows(tmp_path):
    pytest.importorskip("bitsandbytes")
    setup = build_setup(tmp_path, tied=True)
    before = snapshot(setup.model)
    result = EmbedOnly().run(
        make_ctx(
            setup,
            tmp_path / "p1",
            steps=3,
            optimizer="adamw8bit",
            weight_decay=0.01,
            learning_rate=1e-2,
        )
    )
    _assert_only_new_rows_changed(
        before, snapshot(result.model), setup.base_vocab_size, setup.new_ids, len(setup.tokenizer)
    )


def _train_rows(history):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in history]


def test_same_seed_gives_identical_histories_and_evaluations_are_reported(tmp_path):
    runs = []
    for attempt in range(2):
        setup = build_setup(tmp_path / f"a{attempt}", tied=True)
        ctx = make_ctx(setup, tmp_path / f"a{attempt}" / "p1", steps=6, eval_every=3, grad_accum=2)
        result = EmbedOnly().run(ctx)
        runs.append((result, ctx))
    (first, ctx1), (second, _) = runs
    assert _train_rows(first.history) == _train_rows(second.history)
    assert [e["step"] for e in ctx1.events.evaluations] == [3, 6]
    for key in ("train_loss", "val_loss", "perplexity", "bits_per_byte", "uniform_loss"):
        assert key in ctx1.events.evaluations[-1]
    lines = (tmp_path / "a0" / "p1" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 3, 4, 5, 6, 6]
    assert first.metrics["val_loss"] == ctx1.events.evaluations[-1]["val_loss"]


def test_checkpoints_hold_only_small_files_and_are_pruned(tmp_path):
    setup = build_setup(tmp_path, tied=False)
    ctx = make_ctx(setup, tmp_path / "p1", steps=8, eval_every=2, keep_last=1)
    EmbedOnly().run(ctx)
    assert [s for s, _ in ctx.events.checkpoints] == [2, 4, 6, 8]
    remaining = sorted((tmp_path / "p1" / "checkpoints").iterdir())
    assert 1 <= len(remaining) <= 2 and remaining[-1].name == "step-0000008"
    model_bytes = sum(p.numel() * p.element_size() for p in setup.model.parameters())
    rows_bytes = 2 * len(setup.new_ids) * 32 * 4
    for checkpoint in remaining:
        files = {f.name: f.stat().st_size for f in checkpoint.iterdir()}
        assert set(files) == {
            "trainable.safetensors",
            "optimizer.safetensors",
            "optimizer.json",
            "rng.safetensors",
            "state.json",
        }
        assert sum(files.values()) < model_bytes / 4
        tensors = load_file(str(checkpoint / "trainable.safetensors"))
        assert set(tensors) == {"ids", "input", "output"}
        assert tensors["input"].shape == (len(setup.new_ids), 32)
        assert files["trainable.safetensors"] < rows_bytes + 4096
    assert not list((tmp_path / "p1" / "checkpoints").glob(".*"))  # no half-written leftovers


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("tied", "optimizer"),
    [(True, "adamw"), (False, "adamw"), (False, "adafactor"), (True, "adamw8bit")],
)
def test_resume_after_an_interruption_reaches_the_same_rows(tmp_path, tied, optimizer):
    if optimizer == "adamw8bit":
        pytest.importorskip("bitsandbytes")
    settings = dict(
        steps=10,
        eval_every=2,
        grad_accum=2,
        weight_decay=0.01,
        scheduler="cosine",
        warmup_steps=3,
        learning_rate=1e-2,
        optimizer=optimizer,
    )
    full = build_setup(tmp_path / "full", tied=tied)
    full_result = EmbedOnly().run(make_ctx(full, tmp_path / "full" / "p1", **settings))

    cut = build_setup(tmp_path / "cut", tied=tied)
    ctx = make_ctx(cut, tmp_path / "cut" / "p1", **settings)
    initial_rows = cut.model.get_input_embeddings().weight[cut.new_ids].clone()

    def stop_at_six(step, path):
        if step == 6:
            raise _Stop

    ctx.events.checkpoint_saved = stop_at_six
    with pytest.raises(_Stop):
        EmbedOnly().run(ctx)
    # the interrupted phase left the model unwrapped and its rows as they were
    assert type(cut.model.get_input_embeddings()) is torch.nn.Embedding
    assert torch.equal(cut.model.get_input_embeddings().weight[cut.new_ids], initial_rows)

    # debris of a save killed half-way: neither may be taken for a checkpoint
    (tmp_path / "cut" / "p1" / "checkpoints" / "step-0000008").mkdir()
    (tmp_path / "cut" / "p1" / "checkpoints" / ".step-0000008-x").mkdir()
    again = build_setup(tmp_path / "again", tied=tied)  # a fresh session: same injected model
    resumed_ctx = make_ctx(again, tmp_path / "cut" / "p1", resume=True, **settings)
    resumed = EmbedOnly().run(resumed_ctx)
    assert resumed.metrics["resumed_from"] == 6
    reference = snapshot(full_result.model)
    for name, value in snapshot(resumed.model).items():
        assert torch.equal(value, reference[name]), name  # bit-identical, untied head included
    assert _train_rows(resumed.history) == _train_rows(full_result.history)
    assert [e["step"] for e in resumed_ctx.events.evaluations] == [8, 10]


def test_resume_refuses_a_checkpoint_from_other_settings(tmp_path):
    setup = build_setup(tmp_path, tied=True)
    EmbedOnly().run(make_ctx(setup, tmp_path / "p1", steps=2))
    other = build_setup(tmp_path / "b", tied=True)
    with pytest.raises(TrainingError, match="different settings"):
        EmbedOnly().run(make_ctx(other, tmp_path / "p1", resume=True, steps=4, batch_size=3))


def test_resume_checks_the_restored_validation_loss(tmp_path):
    setup = build_setup(tmp_path, tied=True)
    ctx = make_ctx(setup, tmp_path / "p1", steps=4, save_every=2, eval_every=2)
    EmbedOnly().run(ctx)
    assert [s for s, _ in ctx.events.checkpoints] == [2, 4]
    other = build_setup(tmp_path / "b", tied=True)
    with torch.no_grad():  # a different body: the saved rows no longer give the saved loss
        for p in other.model.model.layers.parameters():
            p.add_(torch.randn_like(p))
    with pytest.raises(TrainingError, match="restored rows give validation loss"):
        EmbedOnly().run(
            make_ctx(other, tmp_path / "p1", resume=True, steps=8, save_every=2, eval_every=2)
        )


def test_early_stopping_with_patience(tmp_path):
    setup = build_setup(tmp_path, tied=True)
    # a learning rate too small to move fp32 rows: validation loss never improves after the first
    ctx = make_ctx(setup, tmp_path / "p1", steps=20, eval_every=2, patience=2, learning_rate=1e-12)
    result = EmbedOnly().run(ctx)
    assert result.metrics["stopped_early"] and result.metrics["steps"] == 6
    assert [e["step"] for e in ctx.events.evaluations] == [2, 4, 6]
    assert "best_checkpoint" in result.artefacts


def test_non_finite_loss_is_a_training_error(tmp_path):
    setup = build_setup(tmp_path, tied=False)
    with torch.no_grad():
        setup.model.get_input_embeddings().weight[setup.new_ids] = float("nan")
    with pytest.raises(TrainingError, match="training loss became nan at step 1"):
        EmbedOnly().run(make_ctx(setup, tmp_path / "p1", steps=3))
    assert type(setup.model.get_input_embeddings()) is torch.nn.Embedding
