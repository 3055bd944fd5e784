"""A seeded train/validation split of the corpus text, and cached token blocks."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import DataError
from wake2vec.vocab.files import read_corpus

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from wake2vec.recipe.schema import DataSpec

BLOCK_SCHEME = "start-blocks-v2"  # bump when the way blocks are cut changes: invalidates caches
_CHUNK_CHARS = 1_000_000  # the tokenizer sees the text in pieces of about this size


def check_corpus(spec: DataSpec, seed: int) -> str:
    """Read the corpus of ``spec`` and check that it splits into training and validation text;
    return the text. Every problem is a :class:`DataError` naming the file."""
    text = read_corpus(spec.corpus, spec.encoding)
    corpus_split_span(text, spec, seed)
    return text


def corpus_split_span(text: str, spec: DataSpec, seed: int) -> tuple[int, int]:
    """:func:`split_span` for the corpus of ``spec``, its errors naming the corpus file."""
    try:
        return split_span(text, spec.validation_fraction, seed)
    except DataError as exc:
        raise DataError(f"{spec.corpus}: {exc}") from None


# --------------------------------------------------------------------------- splitting


def _units(text: str) -> list[tuple[int, int]]:
    """Character spans of paragraphs, else lines, else words: the places a split may fall."""
    for separator in ("\n\n", "\n", " "):
        spans, start = [], 0
        while start < len(text):
            end = text.find(separator, start)
            end = len(text) if end < 0 else end + len(separator)
            spans.append((start, end))
            start = end
        if len(spans) >= 20:
            return spans
    return spans


def split_span(text: str, validation_fraction: float, seed: int) -> tuple[int, int]:
    """The ``(start, end)`` character span of the validation text inside ``text``.

    The span is contiguous, starts and ends on a paragraph boundary (or a line or word
    boundary when the text has too few paragraphs), holds about ``validation_fraction`` of the
    characters, and its position is drawn from ``seed``. It depends on nothing else, so every
    tokenizer and model of a study is validated on the same text.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), not {validation_fraction}")
    units = _units(text)
    if len(units) < 2:
        raise DataError(
            "the corpus is a single unbroken piece of text; it cannot be split for validation"
        )
    import bisect

    target = max(1, round(len(text) * validation_fraction))
    cumulative = [0]
    for start, end in units:
        cumulative.append(cumulative[-1] + end - start)
    candidates = []  # (first unit, one past the last unit) of every span long enough
    for i in range(len(units)):
        j = bisect.bisect_left(cumulative, cumulative[i] + target, lo=i + 1)
        if j <= len(units) and (i > 0 or j < len(units)):
            candidates.append((i, j))
    if not candidates:
        candidates = [(len(units) - 1, len(units))]
    first, stop = candidates[random.Random(f"wake2vec-split-{seed}").randrange(len(candidates))]
    return units[first][0], units[stop - 1][1]


def split_text(text: str, validation_fraction: float, seed: int) -> tuple[str, str]:
    """Split ``text`` into ``(train_text, val_text)`` before any tokenisation.

    The validation text is one contiguous span chosen by :func:`split_span`; the training text
    is everything before it followed by everything after it. Deterministic in (text, fraction,
    seed).
    """
    start, end = split_span(text, validation_fraction, seed)
    return text[:start] + text[end:], text[start:end]


# --------------------------------------------------------------------------- blocks


@dataclass
class DataBundle:
    """The split text and its token blocks for one tokenizer.

    ``train_blocks``/``val_blocks`` are ``datasets.Dataset`` objects with an ``input_ids``
    column (lists of ``seq_len`` ids), an ``n_bytes`` column (the UTF-8 bytes of text whose
    tokens that block predicts, so bits per byte is exact for any subset of blocks) and an
    ``n_ids`` column (the ids that are text, not padding). Only the last validation block may
    be padded: validation covers the whole validation text, so two tokenizers are measured on
    the same bytes.
    """

    train_text: str
    val_text: str
    train_blocks: Dataset
    val_blocks: Dataset
    val_bytes: int  # UTF-8 bytes of validation text predicted by all val blocks
    seq_len: int
    val_span: tuple[int, int] = (0, 0)  # character span of the validation text in the corpus
    fingerprint: str = ""
    corpus: str = ""  # the corpus path, for messages
    stats: dict[str, Any] = field(default_factory=dict)

    def train_tensor(self) -> torch.Tensor:
        """Training blocks as one ``long`` tensor (blocks x seq_len)."""
        return blocks_tensor(self.train_blocks)

    def val_tensor(self) -> torch.Tensor:
        """Validation blocks as one ``long`` tensor (blocks x seq_len)."""
        return blocks_tensor(self.val_blocks)

    def val_lengths(self) -> list[int]:
        """How many ids of each validation block are text (the rest is padding)."""
        return list(self.val_blocks["n_ids"])


def blocks_tensor(blocks: Dataset) -> torch.Tensor:
    """The ``input_ids`` column of a block dataset as a ``long`` tensor (blocks x seq_len)."""
    import torch

    if len(blocks) == 0:
        return torch.zeros((0, 0), dtype=torch.long)
    array = blocks.with_format("numpy", columns=["input_ids"])[:]["input_ids"]
    return torch.from_numpy(array).long()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash that changes whenever the tokenizer would produce different ids."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # a slow tokenizer: hash its saved files
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for name in sorted(tokenizer.save_pretrained(tmp)):
                if Path(name).is_file():
                    digest.update(Path(name).name.encode())
                    digest.update(Path(name).read_bytes())
    added = sorted((t, i) for t, i in tokenizer.get_added_vocab().items())
    digest.update(json.dumps([added, tokenizer.bos_token_id, len(tokenizer)]).encode())
    return digest.hexdigest()


def _token_ends(text: str, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (no special tokens) and the character offset where each ends."""
    ids: list[int] = []
    ends: list[int] = []
    start = 0
    while start < len(text):
        stop = (
            len(text)
            if len(text) - start <= _CHUNK_CHARS
            else text.rfind("\n", start, start + _CHUNK_CHARS) + 1
        )
        if stop <= start:
            stop = min(len(text), start + _CHUNK_CHARS)
        chunk = text[start:stop]
        if getattr(tokenizer, "is_fast", False):
            enc = tokenizer(
                chunk, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            chunk_ends = [start + e for _, e in enc["offset_mapping"]]
            # offsets never move backwards (byte pieces of one character share a span)
            for k in range(1, len(chunk_ends)):
                chunk_ends[k] = max(chunk_ends[k], chunk_ends[k - 1])
            ids += enc["input_ids"]
            ends += chunk_ends
        else:  # no offsets: spread the chunk's characters over its tokens
            chunk_ids = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
            n = max(1, len(chunk_ids))
            ids += chunk_ids
            ends += [start + round(len(chunk) * (k + 1) / n) for k in range(len(chunk_ids))]
        start = stop
    return ids, ends


def start_token(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The id that opens every block as context: BOS, else EOS (GPT-2 and Qwen have no BOS and
    mark a document boundary with their end-of-text token), else None."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def make_blocks(
    text: str, tokenizer: PreTrainedTokenizerBase, seq_len: int, *, keep_tail: bool = False
) -> tuple[list[list[int]], list[int], list[int]]:
    """Cut the tokens of ``text`` into blocks of ``seq_len`` ids; return the blocks, the bytes
    each predicts and how many of its ids are text.

    With a start token (:func:`start_token`) each block starts with it and carries
    ``seq_len - 1`` text tokens, all of them predicted, so the blocks together predict every
    byte of ``text`` whatever the tokenizer; without one a block is ``seq_len`` text tokens and
    its first one is context only. A block's byte count covers exactly the text of the tokens
    it predicts (with the whitespace before them), so sum(NLL) / bytes is bits per byte x ln 2.
    A final partial block is dropped, or with ``keep_tail`` padded to ``seq_len`` (its padding
    predicts nothing).
    """
    ids, ends = _token_ends(text, tokenizer)
    start = start_token(tokenizer)
    per_block = seq_len - 1 if start is not None else seq_len
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (start or 0)
    blocks: list[list[int]] = []
    n_bytes: list[int] = []
    n_ids: list[int] = []
    previous_end = 0
    n_blocks = -(-len(ids) // per_block) if keep_tail else len(ids) // per_block
    for b in range(n_blocks):
        lo, hi = b * per_block, min(len(ids), (b + 1) * per_block)
        if start is not None:
            block = [start] + ids[lo:hi]
            begin = previous_end
        else:
            block = ids[lo:hi]
            begin = ends[lo]
        if len(block) < 2:  # a tail that predicts nothing
            break
        n_ids.append(len(block))
        blocks.append(block + [pad] * (seq_len - len(block)))
        n_bytes.append(len(text[begin : ends[hi - 1]].encode("utf-8")))
        previous_end = ends[hi - 1]
    return blocks, n_bytes, n_ids


def _cached_blocks(
    text: str, tokenizer: PreTrainedTokenizerBase, seq_len: int, tok_fp: str, cache_dir: Path | None,
    *, keep_tail: bool = False,
) -> tuple[Dataset, str]:
    from datasets import Dataset, load_from_disk
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    key = hashlib.sha256(
        json.dumps(
            [BLOCK_SCHEME, hashlib.sha256(text.encode()).hexdigest(), tok_fp, seq_len, keep_tail]
        ).encode()
    ).hexdigest()[:32]
    if cache_dir is not None:
        target = Path(cache_dir) / "blocks" / key
        if (target / "dataset_info.json").is_file():
            return load_from_disk(str(target)), key
    blocks, n_bytes, n_ids = make_blocks(text, tokenizer, seq_len, keep_tail=keep_tail)
    ds = Dataset.from_dict({"input_ids": blocks, "n_bytes": n_bytes, "n_ids": n_ids})
    if cache_dir is not None and blocks:  # nothing to cache for a text shorter than a block
        import shutil
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
        quiet = are_progress_bars_disabled()
        disable_progress_bars()  # a bar per tiny save is noise in the run log
        try:
            ds.save_to_disk(str(tmp))
        finally:
            if not quiet:
                enable_progress_bars()
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        ds = load_from_disk(str(target))
    return ds, key


def prepare_data(
    spec: DataSpec,
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: Path | None,
    seed: int,
    lexicon_words: tuple[str, ...] | list[str] = (),
    text: str | None = None,
) -> DataBundle:
    """Read, split and tokenise the corpus of ``spec`` for ``tokenizer``.

    The split is made on the text (see :func:`split_text`); lexicon lines (when
    ``spec.lexicon_in_training``) and ``spec.synthetic_sentences`` template sentences per
    lexicon word are appended to the training text only, never to validation. Token blocks are cached under
    ``cache_dir`` keyed by the text, the tokenizer's fingerprint and ``seq_len``. ``text``
    skips reading the corpus again when the caller already has it.
    """
    corpus = Path(spec.corpus)
    if text is None:
        text = read_corpus(corpus, spec.encoding)
    start, end = corpus_split_span(text, spec, seed)
    train_text, val_text = text[:start] + text[end:], text[start:end]
    if spec.lexicon_in_training and lexicon_words:
        train_text = train_text.rstrip("\n") + "\n\n" + "\n".join(lexicon_words) + "\n"
    if spec.synthetic_sentences and lexicon_words:
        from wake2vec.vocab.synthetic import synthetic_sentences

        sentences = synthetic_sentences(lexicon_words, seed, per_word=spec.synthetic_sentences)
        train_text = train_text.rstrip("\n") + "\n\n" + "\n".join(sentences) + "\n"
    tok_fp = tokenizer_fingerprint(tokenizer)
    train_blocks, train_key = _cached_blocks(train_text, tokenizer, spec.seq_len, tok_fp, cache_dir)
    val_blocks, val_key = _cached_blocks(val_text, tokenizer, spec.seq_len, tok_fp, cache_dir,
                                         keep_tail=True)
    for label, blocks, part in (
        ("training", train_blocks, train_text),
        ("validation", val_blocks, val_text),
    ):
        if len(blocks) == 0 or blocks[0]["n_ids"] < spec.seq_len:  # not even one whole block
            n_corpus = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            n_part = len(tokenizer(part, add_special_tokens=False)["input_ids"])
            raise DataError(
                f"{corpus}: the corpus has {n_corpus} tokens and its {label} text {n_part}, fewer "
                f"than one block of data.seq_len = {spec.seq_len} tokens; use a longer corpus or a "
                "smaller data.seq_len"
                + (" or a larger data.validation_fraction" if label == "validation" else "")
            )
    return DataBundle(
        train_text=train_text,
        val_text=val_text,
        train_blocks=train_blocks,
        val_blocks=val_blocks,
        val_bytes=int(sum(val_blocks["n_bytes"])),
        seq_len=spec.seq_len,
        val_span=(start, end),
        fingerprint=f"{train_key}-{val_key}",
        corpus=str(corpus),
        stats={
            "train_blocks": len(train_blocks),
            "val_blocks": len(val_blocks),
            "train_chars": len(train_text),
            "val_chars": len(val_text),
        },
    )
