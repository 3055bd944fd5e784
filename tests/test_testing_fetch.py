"""``python -m wake2vec.testing fetch``: which assets each name fetches (nothing is downloaded
here: the fetchers are replaced by recorders)."""

from __future__ import annotations

import pytest

from wake2vec import testing


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    names: list[str] = []
    monkeypatch.setattr(testing, "real_tokenizer_dir", lambda name: names.append(name) or name)
    monkeypatch.setattr(testing, "smollm2_gguf", lambda: names.append("smollm2") or "gguf")
    monkeypatch.setattr(testing, "llama_cpp_wheels", lambda: names.append("llama-cpp") or "wheels")
    return names


def test_tokenizers_names_every_real_tokenizer(fetched):
    assert testing.main(["fetch", "tokenizers", "smollm2"]) == 0
    assert fetched == [*testing.REAL_TOKENIZERS, "smollm2"]


def test_no_name_fetches_everything_and_a_name_only_itself(fetched):
    assert testing.main(["fetch"]) == 0
    assert fetched == [*testing.REAL_TOKENIZERS, "smollm2", "llama-cpp"]
    fetched.clear()
    assert testing.main(["fetch", "llama-cpp"]) == 0
    assert fetched == ["llama-cpp"]


def test_an_unknown_name_is_reported_and_fails(monkeypatch, capsys):
    def unknown(name):
        return testing.REAL_TOKENIZERS[name]  # KeyError, as the real fetcher raises

    monkeypatch.setattr(testing, "real_tokenizer_dir", unknown)
    assert testing.main(["fetch", "bogus"]) == 1
    assert "bogus: NOT AVAILABLE" in capsys.readouterr().err
