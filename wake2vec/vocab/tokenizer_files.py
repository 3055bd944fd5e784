"""Save an injected tokenizer beside a model so that ``AutoTokenizer`` loads it as saved.

Transformers 5 picks the tokenizer class of a model directory from its ``config.json`` for some
model types (qwen2, phi3 and others it lists as shipping a wrong class on the hub), whatever
``tokenizer_config.json`` says, and that class rebuilds the normalizer, pre-tokenizer and
decoder from its own defaults: the whole-word injector's steps would be dropped and the new
words would no longer come out as single ids. When a plain reload differs from the saved
tokenizer, the directory gets an ``auto_map`` entry pointing at a one-line subclass of
``PreTrainedTokenizerFast`` (``tokenization_wake2vec.py``): transformers then reads
``tokenizer.json`` as written, without running that file unless the caller passes
``trust_remote_code=True``, in which case it runs the subclass, which does the same (wake2vec
itself never loads it that way).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import TrainingError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MODULE = "tokenization_wake2vec"
CLASS = "InjectedTokenizer"
_SOURCE = f'''"""The tokenizer of a wake2vec run: tokenizer.json exactly as saved (written by wake2vec)."""

from transformers import PreTrainedTokenizerFast


class {CLASS}(PreTrainedTokenizerFast):
    """Reads tokenizer.json as written, with no rebuilt pipeline."""
'''


def pipeline(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What decides how a fast tokenizer encodes and decodes: normalizer, pre-tokenizer,
    decoder, model type, vocabulary size and added tokens."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    return {
        "normalizer": state.get("normalizer"),
        "pre_tokenizer": state.get("pre_tokenizer"),
        "decoder": state.get("decoder"),
        "model": (state.get("model") or {}).get("type"),
        "vocab": len((state.get("model") or {}).get("vocab") or ()),
        "added_tokens": [(t["id"], t["content"], t.get("single_word"), t.get("normalized"))
                         for t in state.get("added_tokens", [])],
    }


def save_beside_model(tokenizer: PreTrainedTokenizerBase, directory: Path) -> dict[str, Any]:
    """Save ``tokenizer`` into the model directory ``directory`` and check that
    ``AutoTokenizer.from_pretrained(directory)`` gives back the same pipeline; add the
    ``auto_map`` entry (see the module docstring) when it does not. Returns what was done."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    tokenizer.save_pretrained(directory)
    wanted = pipeline(tokenizer)
    if pipeline(AutoTokenizer.from_pretrained(directory, trust_remote_code=False)) == wanted:
        return {"auto_tokenizer": "as saved"}
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoTokenizer": [None, f"{MODULE}.{CLASS}"]}
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    (directory / f"{MODULE}.py").write_text(_SOURCE, encoding="utf-8")
    found = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)  # runs no file
    if pipeline(found) != wanted:
        raise TrainingError(
            f"{directory}: AutoTokenizer rebuilds the injected tokenizer as "
            f"{type(found).__name__} even with an auto_map entry; load it with "
            "PreTrainedTokenizerFast.from_pretrained instead")
    return {"auto_tokenizer": f"auto_map -> {MODULE}.{CLASS}"}
