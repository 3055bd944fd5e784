"""Built-in initialisers: shape, dtype, determinism, the statistics each promises, and that
padding rows beyond the base ids never leak into new rows."""

from __future__ import annotations

import logging

import pytest
from helpers_tokenizers import build_tokenizer
from wake2vec_plugins.initializers.basic import Compositional, Mean, Spherical, SubwordMean

from wake2vec.api import InitContext
from wake2vec.vocab.morphology import Morphology

HIDDEN = 48
WORDS = ["riverrun", "riverrun", "unbringing", "rebrothers", "générations", "nightfall"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer("spm", tmp_path_factory.mktemp("spm-init"))


@pytest.fixture(scope="module")
def base(tokenizer):
    """Base rows plus 5 'padding' rows of huge values that no initialiser may touch."""
    import torch

    g = torch.Generator().manual_seed(0)
    rows = torch.randn(len(tokenizer), HIDDEN, generator=g) * 0.05 + 0.01
    return torch.cat([rows, torch.full((5, HIDDEN), 1e4)])


def context(tokenizer, words=WORDS, seed=0, morphology=None):
    import torch

    n = len(tokenizer)
    return InitContext(
        words=list(words),
        ids=list(range(n + 5, n + 5 + len(words))),
        base_tokenizer=tokenizer,
        base_ids=list(range(n)),
        morphology=morphology,
        generator=torch.Generator().manual_seed(seed),
    )


MORPHOLOGY = Morphology(
    prefixes={"un": ["undo", "unmade"], "re": ["redo", "return"]},
    suffixes={"ing": ["bringing", "going"], "s": ["rivers"], "fall": ["nightfall"]},
)

ALL = [Spherical(), Mean(), Mean(Mean.Params(covariance_scale=0.5)), SubwordMean(), Compositional()]


@pytest.mark.parametrize("init", ALL, ids=lambda i: f"{i.name}-{i.params}")
def test_shape_dtype_determinism_and_no_padding(init, tokenizer, base):
    import torch

    out = init.initialize(base.to(torch.bfloat16), context(tokenizer, morphology=MORPHOLOGY))
    assert out.shape == (len(WORDS), HIDDEN) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() < 100  # the 1e4 padding rows never leak in
    first = init.initialize(base, context(tokenizer, morphology=MORPHOLOGY))
    again = init.initialize(base, context(tokenizer, morphology=MORPHOLOGY))
    assert torch.equal(first, again)
    assert torch.equal(first[0], first[1])  # one word, one starting point
    other_seed = init.initialize(base, context(tokenizer, seed=1, morphology=MORPHOLOGY))
    random = not (
        isinstance(init, (SubwordMean,))
        or (isinstance(init, Mean) and init.params.covariance_scale == 0)
    )
    assert torch.equal(first, other_seed) != random


def test_spherical_radius(tokenizer, base):
    import torch

    n = len(tokenizer)
    for k in (1.5, 0.5):
        out = Spherical(Spherical.Params(k=k)).initialize(base, context(tokenizer))
        expected = k * base[:n].std() * HIDDEN**0.5
        torch.testing.assert_close(
            out.norm(dim=1), expected.expand(len(WORDS)), rtol=1e-5, atol=1e-6
        )
        assert len({tuple(r.tolist()) for r in out}) == len(set(WORDS))  # random directions


def test_mean_exact_and_sampled(tokenizer, base):
    import torch

    n = len(tokenizer)
    mean = base[:n].mean(dim=0)
    exact = Mean().initialize(base, context(tokenizer))
    torch.testing.assert_close(exact, mean.expand(len(WORDS), -1))
    many = [f"w{i}" for i in range(4000)]
    sampled = Mean(Mean.Params(covariance_scale=1.0)).initialize(
        base, context(tokenizer, words=many)
    )
    assert len({tuple(r.tolist()) for r in sampled[:50]}) == 50  # distinct rows
    spread = base[:n].std(dim=0)
    assert (
        (sampled.mean(dim=0) - mean).abs() < 4 * spread / 4000**0.5
    ).all()  # centred on the mean
    torch.testing.assert_close(sampled.std(dim=0), spread, rtol=0.1, atol=1e-3)  # base covariance


def test_subword_mean_uses_running_text_pieces(tokenizer, base):
    import torch

    out = SubwordMean().initialize(base, context(tokenizer))
    pieces = tokenizer(" unbringing", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(out[2], base[pieces].mean(dim=0))


def test_compositional_formula(tokenizer, base):
    import torch

    alpha = 0.25
    init = Compositional(Compositional.Params(alpha=alpha, noise=0.0, root_fallback="subword-mean"))
    out = init.initialize(base, context(tokenizer, words=["unbringing"], morphology=MORPHOLOGY))

    def one(text):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return base[ids].mean(dim=0), len(ids)

    prefix, n_prefix = one(" un")
    suffix_id = tokenizer.convert_tokens_to_ids("ing")
    suffix = base[suffix_id] if suffix_id != tokenizer.unk_token_id else one("ing")[0]
    root, _ = one(" bring")
    if n_prefix > 1:  # not one token: the mean of its examples' piece means
        prefix = torch.stack([one(" undo")[0], one(" unmade")[0]]).mean(dim=0)
    expected = alpha * prefix + (1 - 2 * alpha) * root + alpha * suffix
    torch.testing.assert_close(out[0], expected)


def test_compositional_unknown_root_is_random_at_base_std(tokenizer, base):
    import torch

    n = len(tokenizer)
    init = Compositional(Compositional.Params(alpha=0.0, noise=0.0))
    out = init.initialize(base, context(tokenizer, words=["xqzvkpwj"], morphology=MORPHOLOGY))
    pieces = tokenizer(" xqzvkpwj", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    assert not torch.allclose(out[0], base[pieces].mean(dim=0))
    assert 0.5 < float(out[0].std() / base[:n].std()) < 2.0


def test_compositional_without_morphology_falls_back_and_says_so(tokenizer, base, caplog):
    import torch

    init = Compositional(Compositional.Params(noise=0.0))
    with caplog.at_level(logging.WARNING, logger="wake2vec"):
        out = init.initialize(base, context(tokenizer))
    assert "no morphology" in caplog.text
    torch.testing.assert_close(out, SubwordMean().initialize(base, context(tokenizer)))


@pytest.mark.slow
@pytest.mark.parametrize("init", ALL, ids=lambda i: f"{i.name}-{i.params}")
def test_45k_rows_at_hidden_2048(init, tokenizer):
    """Full study scale: right shape, finite, distinct rows (timings live in benchmarks/)."""
    import torch

    base = torch.randn(32000, 2048) * 0.02  # TinyLlama's base vocabulary at hidden 2048
    words = [f"word{i}x" for i in range(45000)]
    ctx = context(tokenizer, words=words, morphology=MORPHOLOGY)
    ctx.base_ids = list(range(32000))
    out = init.initialize(base, ctx)
    assert out.shape == (45000, 2048) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


def test_compositional_word_without_affixes_is_its_root(tokenizer, base):
    import torch

    river = tokenizer(" river", add_special_tokens=False)["input_ids"]
    assert len(river) == 1
    for alpha in (0.25, 0.5):
        init = Compositional(Compositional.Params(alpha=alpha, noise=0.0))
        out = init.initialize(base, context(tokenizer, words=["river"], morphology=MORPHOLOGY))
        torch.testing.assert_close(out[0], base[river[0]])
