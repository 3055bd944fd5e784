"""Tests for the built-in auxiliary losses: known ideal values, descent under gradient steps,
seeding, scale independence and errors a user would meet."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from wake2vec_plugins.regularizers import geometry as R

from wake2vec.api import RegularizerContext
from wake2vec.errors import UserInputError

WORDS = [
    "rejoyce", "redo", "retell", "recall",  # prefix re- ("redo": root shorter than 3 letters)
    "nation", "creation", "libation", "ovation",  # -ation ("nation", "ovation": roots too short)
    "joyce", "tell",  # roots that are new words
    "chaosmos", "smoke",
]
MORPHOLOGY = SimpleNamespace(
    prefixes={"re-": ["redo"], "un": ["undo"]},
    suffixes={"-ation": ["creation"]},
    devices={
        "portmanteau": ["chaosmos", "rejoyce", "smoke"],
        "pun": ["redo", "retell", "recall"],
        "foreign": ["libation", "ovation", "creation"],
    },
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def context(new_rows, initial=None, words=WORDS, morphology=MORPHOLOGY) -> RegularizerContext:
    base = torch.randn(200, new_rows.shape[1], generator=gen(1))
    return RegularizerContext(
        new_rows=new_rows,
        base_rows=base,
        new_words=list(words),
        new_ids=list(range(200, 200 + len(words))),
        morphology=morphology,
        initial_new_rows=initial,
    )


def descend(reg_cls, ctx: RegularizerContext, steps=60, lr=0.05, **params) -> tuple[float, float]:
    """Loss before and after Adam steps on the new rows, each measured by a fresh instance
    (so sampled losses see the same samples)."""
    start = reg_cls(reg_cls.Params(**params)).loss(ctx).item()
    rows = ctx.new_rows.detach().clone().requires_grad_(True)
    reg = reg_cls(reg_cls.Params(**params))
    opt = torch.optim.Adam([rows], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = reg.loss(replace(ctx, new_rows=rows))
        loss.backward()
        opt.step()
    end = reg_cls(reg_cls.Params(**params)).loss(replace(ctx, new_rows=rows.detach())).item()
    return start, end


def test_morpheme_groups_match_prefixes_and_suffixes_with_a_root_left():
    groups = dict(R.morpheme_groups(WORDS, MORPHOLOGY))
    assert groups == {"prefix:re": [0, 2, 3], "suffix:ation": [5, 6]}
    shorter = dict(R.morpheme_groups(WORDS, MORPHOLOGY, min_root=2))
    assert shorter == {"prefix:re": [0, 1, 2, 3], "suffix:ation": [5, 6, 7]}


def test_groups_and_devices_read_the_project_morphology_dataclass():
    from wake2vec.vocab.morphology import Morphology

    morph = Morphology(
        prefixes={"r\u00e9": []}, suffixes={"ation": []}, devices={"pun": ["Retell", "recall"]}
    )
    words = ["R\u00e9joyce", "re\u0301tell", "retell"]  # composed, decomposed, unaccented
    assert dict(R.morpheme_groups(words, morph)) == {"prefix:r\u00e9": [0, 1]}
    assert R.device_labels(["recall", "RETELL", "other"], morph) == {0: 0, 1: 0}


def test_morpheme_loss_is_zero_for_parallel_displacements_and_high_for_random_ones():
    d = 32
    initial = torch.randn(len(WORDS), d, generator=gen(2))
    direction = torch.randn(d, generator=gen(3))
    scale = torch.rand(len(WORDS), 1, generator=gen(4)) + 0.5
    ideal = R.Morpheme().loss(context(initial + scale * direction, initial))
    assert ideal.item() < 1e-6
    noisy = initial + torch.randn(len(WORDS), d, generator=gen(5))
    assert R.Morpheme().loss(context(noisy, initial)).item() > 0.7


def test_morpheme_loss_does_not_scale_with_hidden_size():
    values = []
    for d in (16, 2048):
        initial = torch.randn(len(WORDS), d, generator=gen(6))
        noisy = initial + torch.randn(len(WORDS), d, generator=gen(7))
        values.append(R.Morpheme().loss(context(noisy, initial)).item())
    assert all(0.8 < v < 1.2 for v in values)


def test_morpheme_loss_decreases_under_gradient_steps():
    initial = torch.randn(len(WORDS), 16, generator=gen(8))
    ctx = context(initial + torch.randn(len(WORDS), 16, generator=gen(9)), initial)
    start, end = descend(R.Morpheme, ctx)
    assert end < 0.1 < start


def test_morpheme_root_anchor_uses_root_words_when_present():
    d = 8
    rows = torch.randn(len(WORDS), d, generator=gen(10))
    # "rejoyce" and "retell" are displaced from their roots "joyce" and "tell" along one direction
    direction = torch.randn(d, generator=gen(11))
    rows[0] = rows[8] + direction
    rows[2] = rows[9] + 2 * direction
    words = WORDS[:1] + ["x1"] + WORDS[2:3] + ["x2"] + WORDS[4:]
    loss = R.Morpheme(R.Morpheme.Params(anchor="root")).loss(context(rows, None, words))
    assert loss.item() < 1e-6  # without initial rows only words with a root word count


def test_morpheme_without_morphology_is_a_user_error():
    rows = torch.randn(len(WORDS), 8)
    with pytest.raises(UserInputError, match="morphology"):
        R.Morpheme().loss(context(rows, rows.clone(), morphology=None))


def device_ideal_rows(d: int = 16) -> torch.Tensor:
    rows = torch.randn(len(WORDS), d, generator=gen(12)) * 0.01
    labels = R.device_labels(WORDS, MORPHOLOGY)
    for pos, device in labels.items():
        rows[pos, device] += 1.0  # each device its own axis
    return rows


def test_device_loss_is_zero_when_devices_form_tight_separate_clusters():
    assert R.Device().loss(context(device_ideal_rows())).item() == 0.0
    assert R.Device().loss(context(torch.randn(len(WORDS), 16, generator=gen(13)))).item() > 0.05


def test_device_loss_decreases_under_gradient_steps():
    ctx = context(torch.randn(len(WORDS), 16, generator=gen(14)))
    start, end = descend(R.Device, ctx, steps=80)
    assert end < 0.5 * start


def test_device_triplets_are_seeded_and_valid():
    members, start, size = R.Device()._classes(context(torch.zeros(len(WORDS), 4)))
    labels = R.device_labels(WORDS, MORPHOLOGY)
    assert sorted(members.tolist()) == sorted(labels)
    ctx = context(torch.randn(len(WORDS), 16, generator=gen(15)))
    a, b = R.Device(R.Device.Params(seed=3)), R.Device(R.Device.Params(seed=3))
    assert a.loss(ctx).item() == b.loss(ctx).item()


@pytest.mark.parametrize("cls", [R.Device, R.Repulsion])
def test_sampled_draws_are_a_function_of_seed_and_step_alone(cls):
    # a fresh instance at step 7 (a resumed run) draws what one that has run steps 0..6 draws
    rows = torch.randn(len(WORDS), 16, generator=gen(17))
    used = cls(cls.Params(seed=3, pairs=3, margin=-1.0) if cls is R.Repulsion else cls.Params(seed=3, triplets=3))
    values = [used.loss(replace(context(rows), step=s)).item() for s in range(8)]
    fresh = cls(used.params)
    assert fresh.loss(replace(context(rows), step=7)).item() == values[7]
    assert len(set(values)) > 1  # a new sample each step


def test_repulsion_is_zero_for_orthogonal_rows_and_high_for_a_collapsed_set():
    orthogonal = torch.eye(len(WORDS), 32)
    assert R.Repulsion().loss(context(orthogonal)).item() == 0.0
    collapsed = torch.ones(len(WORDS), 32) + 0.01 * torch.randn(len(WORDS), 32, generator=gen(16))
    assert R.Repulsion().loss(context(collapsed)).item() > 0.45


def test_repulsion_decreases_under_gradient_steps():
    collapsed = torch.ones(len(WORDS), 32) + 0.1 * torch.randn(len(WORDS), 32, generator=gen(17))
    start, end = descend(R.Repulsion, context(collapsed), steps=100)
    assert end < 0.01 < start


def test_norm_loss_is_zero_inside_the_base_band_and_decreases_outside():
    ctx = context(torch.zeros(len(WORDS), 16))
    reg = R.Norm()
    low, high, _ = reg.band(ctx.base_rows)
    inside = torch.nn.functional.normalize(torch.randn(len(WORDS), 16, generator=gen(18)), dim=1)
    assert reg.loss(replace(ctx, new_rows=inside * (low + high) / 2)).item() == 0.0
    too_long = inside * high * 3
    start, end = descend(R.Norm, replace(ctx, new_rows=too_long), steps=100, lr=0.2)
    assert start > 1.0 and end < 1e-3


def test_every_loss_is_differentiable_with_respect_to_new_rows():
    initial = torch.randn(len(WORDS), 16, generator=gen(19))
    rows = (initial + torch.randn(len(WORDS), 16, generator=gen(20)) * 5).requires_grad_(True)
    cases = ((R.Morpheme, {}), (R.Device, {}), (R.Repulsion, {"margin": 0.0}), (R.Norm, {}))
    for cls, params in cases:
        rows.grad = None
        cls(cls.Params(**params)).loss(context(rows, initial)).backward()
        assert rows.grad is not None and rows.grad.abs().sum() > 0, cls.name


def test_registered_regularizers_have_names_docstrings_and_strict_params():
    classes = R.wake2vec_register_regularizers()
    assert [c.name for c in classes] == ["morpheme", "device", "repulsion", "norm"]
    assert all(c.__doc__ and "\n" not in c.__doc__.strip() for c in classes)
    with pytest.raises(ValueError):
        R.Repulsion.Params(margn=0.3)


def test_regularizer_plugins_load_into_the_registry():
    from wake2vec.plugins import Plugins, _new_manager, unknown_hooks
    from wake2vec.registry import Registry

    assert unknown_hooks(R) == []
    plugins = Plugins(pm=_new_manager())
    plugins.pm.register(R, name="wake2vec_plugins.regularizers.geometry")
    registry = Registry(plugins)
    assert registry.names("regularizer") == ["device", "morpheme", "norm", "repulsion"]
    reg = registry.create("regularizer", "repulsion", {"margin": 0.2, "pairs": 10})
    assert reg.params.margin == 0.2


def test_morpheme_initial_anchor_without_initial_rows_fails_clearly():
    from wake2vec.errors import TrainingError

    with pytest.raises(TrainingError, match="initial_new_rows"):
        R.Morpheme().loss(context(torch.randn(len(WORDS), 8)))
