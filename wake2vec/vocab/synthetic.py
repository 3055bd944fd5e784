"""Synthetic word forms (prefix + root + suffix) and short template sentences that use given words.

**Weighting.** :func:`synthetic_forms` draws each prefix and each suffix with probability
proportional to the number of example words the morpheme list gives for it (at least 1, so a
morpheme listed without examples can still be drawn): a morpheme the curator illustrated with
ten words is drawn ten times as often as one with a single example. Roots are drawn uniformly.

**Sentences.** :func:`synthetic_sentences` puts every word into short sentences in four
positions: at the start of a sentence, in the middle, right after a comma, and in double
quotes. Words are inserted exactly as given (never re-cased), so the form a tokenizer learns is
the one the sentences show.

Both functions are deterministic for a given seed (they use their own ``random.Random``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wake2vec.vocab.morphology import Morphology

POSITIONS = ("start", "middle", "comma", "quoted")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "start": (
        "{w} came back to us at evening.",
        "{w} was all the talk along the river.",
        "{w} is what the old ones called it.",
        "{w} rose over the town before dawn.",
        "{w} and the rain went on together.",
    ),
    "middle": (
        "They spoke of {w} until the lamps went out.",
        "She found the {w} by the old bridge.",
        "And then {w} passed under the window.",
        "He carried his {w} down to the harbour.",
        "We heard {w} again in the pub that night.",
    ),
    "comma": (
        "By the river, {w} turned and was gone.",
        "Over and over, {w} came round again.",
        "In the morning, {w} sat quiet by the fire.",
        "Late or soon, {w} will find its way home.",
        "Said the washerwoman, {w} is a word to keep.",
    ),
    "quoted": (
        'He wrote "{w}" on the wall and laughed.',
        'The word was "{w}", and nobody knew it.',
        '"{w}," she whispered to the stream.',
        'Call it "{w}" if you like.',
        'They kept saying "{w}" all through the wake.',
    ),
}


def _weights(table: dict[str, list[str]]) -> tuple[list[str], list[int]]:
    morphemes = sorted(m for m in table if m)
    return morphemes, [max(1, len(table[m])) for m in morphemes]


def synthetic_forms(
    morphology: Morphology, roots: Sequence[str], n: int, seed: int, *, unique: bool = True
) -> list[str]:
    """``n`` forms prefix + root + suffix, morphemes drawn by example-word weight (module doc).

    Roots are lower-cased. With ``unique`` (the default) forms are distinct and differ from
    every root; if the morphemes and roots cannot make ``n`` distinct forms, fewer are returned.
    When the morphology has only prefixes (or only suffixes) the other part is left empty.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = sorted({root.strip().lower() for root in roots if root.strip()})
    if not pool:
        raise ValueError("synthetic_forms needs at least one root")
    prefixes, prefix_weights = _weights(morphology.prefixes)
    suffixes, suffix_weights = _weights(morphology.suffixes)
    if not prefixes and not suffixes:
        raise ValueError("the morphology has no prefixes and no suffixes")
    rng = random.Random(seed)
    forms: list[str] = []
    seen = set(pool)
    capacity = max(1, len(prefixes)) * len(pool) * max(1, len(suffixes))
    attempts, limit = 0, 50 * n + 1000
    while len(forms) < n and attempts < limit:
        attempts += 1
        prefix = rng.choices(prefixes, prefix_weights)[0] if prefixes else ""
        root = pool[rng.randrange(len(pool))]
        suffix = rng.choices(suffixes, suffix_weights)[0] if suffixes else ""
        form = f"{prefix}{root}{suffix}"
        if unique:
            if form in seen:
                if len(seen) - len(pool) >= capacity:
                    break
                continue
            seen.add(form)
        forms.append(form)
    return forms


def synthetic_sentences(words: Iterable[str], seed: int, per_word: int = 1) -> list[str]:
    """Short template sentences placing every word (once per ``per_word``) in context.

    Word ``i``'s ``k``-th sentence uses position ``(i + k) % 4`` of start / middle / after a
    comma / in quotes, so every word meets every position once ``per_word`` >= 4 and the
    positions are spread evenly across words otherwise; the template within a position is
    drawn with ``seed``. Duplicate words are used once; the sentences come back shuffled."""
    if per_word < 1:
        raise ValueError(f"per_word must be >= 1, got {per_word}")
    rng = random.Random(seed)
    unique_words = list(dict.fromkeys(w for w in words if w))
    sentences = []
    for i, word in enumerate(unique_words):
        for k in range(per_word):
            position = POSITIONS[(i + k) % len(POSITIONS)]
            template = rng.choice(TEMPLATES[position])
            sentences.append(template.format(w=word))
    rng.shuffle(sentences)
    return sentences
