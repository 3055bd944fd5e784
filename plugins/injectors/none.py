"""The ``none`` injector: adds nothing. A control run uses it to train the base tokenizer's model
with the same phases, seed and validation bytes as its treatment, so the two runs' bits per byte
say what the new words earned beyond the other phases alone."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar

from wake2vec import hookimpl
from wake2vec.api import Injection, Injector

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

NAME = "none"


class NoInjection(Injector):
    """Adds no word: the run keeps the base tokenizer (a control arm)."""

    name: ClassVar[str] = NAME
    ids_per_word: ClassVar[int] = 0
    rows_per_word: ClassVar[int] = 0

    def inject(self, tokenizer: PreTrainedTokenizerBase, words: list[str]) -> Injection:
        return Injection(tokenizer=copy.deepcopy(tokenizer), words=[], ids=[],
                         skipped=[(w, "no injection (control run)") for w in words],
                         base_vocab_size=len(tokenizer))


@hookimpl
def wake2vec_register_injectors() -> list[type]:
    return [NoInjection]
