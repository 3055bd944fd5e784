"""Meta-tests: every hook is documented and exercised by some test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from wake2vec import hookspecs

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("wake2vec_"))
TESTS = Path(__file__).parent


def test_there_are_hooks_for_every_kind():
    from wake2vec.registry import KINDS

    assert set(hookspecs.REGISTRATION_HOOKS) == set(KINDS)
    for hook in hookspecs.REGISTRATION_HOOKS.values():
        assert hook in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    func = getattr(hookspecs, name)
    doc = inspect.getdoc(func) or ""
    assert "Called" in doc, f"{name}: say when it is called"
    assert "Return" in doc, f"{name}: say what it must return"
    for param in inspect.signature(func).parameters:
        assert f"``{param}``" in doc, f"{name}: document argument {param!r}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_tested(name):
    own = Path(__file__).name
    used = [p.name for p in TESTS.rglob("*.py") if p.name != own and name in p.read_text(encoding="utf-8")]
    assert used, f"no test mentions {name}"
