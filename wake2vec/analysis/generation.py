"""Generation probes: seeded samples from fixed prompts at several temperatures, and what they show.

Each sample is measured on its continuation only (the prompt is not counted):

- ``new_token_share``: share of the generated token ids that are injected (new) ids;
- ``unknown_word_share``: share of its words that general English does not know (no entry in
  wordfreq's English list);
- ``lexicon_share``: share of its words that are lexicon words;
- ``lexicon_recall``: distinct lexicon words it uses, as a share of the whole lexicon;
- ``distinct_1``, ``distinct_2``: distinct word unigrams and bigrams over all of them;
- ``repetition_rate``: share of its word trigrams that repeat an earlier trigram of the sample.

Words are maximal runs of letters and digits, joined by inner hyphens and apostrophes, compared
in lower case. A measure with nothing to count (no words, fewer than three words for trigrams) is
``None`` and left out of the means. Sampling never disturbs the caller's random state: each
sample draws from its own seed inside a forked RNG, so probing between phases keeps training
(and its resume) bit-identical.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wake2vec.recipe.schema import GenerationSpec

MEASURES = (
    "new_token_share",
    "unknown_word_share",
    "lexicon_share",
    "lexicon_recall",
    "distinct_1",
    "distinct_2",
    "repetition_rate",
)

_WORD = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")


def words_of(text: str) -> list[str]:
    """The words of ``text`` in lower case (``Adam's`` and ``riverrun-past`` stay whole)."""
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


@lru_cache(maxsize=65_536)
def _known_in_english(word: str) -> bool:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") > 0.0


def _ngrams(items: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def measure(text: str, token_ids: Sequence[int], new_ids: set[int], lexicon: set[str]) -> dict[str, float | None]:
    """The measures of one continuation (see the module docstring); ``lexicon`` in lower case."""
    words = words_of(text)
    trigrams = _ngrams(words, 3)
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in trigrams:
        repeats += gram in seen
        seen.add(gram)
    in_lexicon = [w for w in words if w in lexicon]
    bigrams = _ngrams(words, 2)
    return {
        "new_token_share": _share(sum(1 for t in token_ids if t in new_ids), len(token_ids)),
        "unknown_word_share": _share(sum(1 for w in words if not _known_in_english(w)), len(words)),
        "lexicon_share": _share(len(in_lexicon), len(words)),
        "lexicon_recall": _share(len(set(in_lexicon)), len(lexicon)) if words else None,
        "distinct_1": _share(len(set(words)), len(words)),
        "distinct_2": _share(len(set(bigrams)), len(bigrams)),
        "repetition_rate": _share(repeats, len(trigrams)),
    }


def mean_measures(samples: Iterable[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each measure over ``samples`` (their ``measures``), ignoring ``None``."""
    columns: dict[str, list[float]] = {m: [] for m in MEASURES}
    for sample in samples:
        for name in MEASURES:
            value = sample["measures"].get(name)
            if value is not None and not math.isnan(value):
                columns[name].append(float(value))
    return {m: (sum(v) / len(v) if v else None) for m, v in columns.items()}


def probe(
    model: Any,
    tokenizer: Any,
    spec: GenerationSpec,
    *,
    new_ids: Iterable[int],
    lexicon: Iterable[str],
    seed: int,
) -> dict[str, Any]:
    """Sample every prompt at every temperature ``spec.samples_per_setting`` times; measure each.

    Returns the ``generation`` section of a phase's metrics.json (documented in
    docs/metrics.md): settings, samples, means by temperature and overall.
    """
    import torch

    new = set(int(i) for i in new_ids)
    lex = {w.lower() for w in lexicon if w}
    device = next(model.parameters()).device
    devices = [device] if device.type == "cuda" else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    samples: list[dict[str, Any]] = []
    draw = 0
    try:
        for prompt in spec.prompts:
            encoded = tokenizer(prompt, return_tensors="pt")
            input_ids = encoded["input_ids"].to(device)
            mask = encoded.get("attention_mask")
            mask = torch.ones_like(input_ids) if mask is None else mask.to(device)
            for temperature in spec.temperatures:
                for k in range(spec.samples_per_setting):
                    sample_seed = seed * 1_000_003 + draw
                    draw += 1
                    with torch.random.fork_rng(devices=devices), torch.no_grad():
                        torch.manual_seed(sample_seed)
                        out = model.generate(
                            input_ids=input_ids,
                            attention_mask=mask,
                            do_sample=True,
                            temperature=float(temperature),
                            top_k=spec.top_k,
                            top_p=1.0,
                            max_new_tokens=spec.max_new_tokens,
                            pad_token_id=pad,
                        )
                    ids = out[0, input_ids.shape[1] :].tolist()
                    text = tokenizer.decode(ids, skip_special_tokens=True)
                    samples.append({
                        "prompt": prompt,
                        "temperature": float(temperature),
                        "sample": k,
                        "seed": sample_seed,
                        "text": text,
                        "tokens": len(ids),
                        "measures": measure(text, ids, new, lex),
                    })
    finally:
        model.train(was_training)
    by_temperature = {
        _key(t): mean_measures(s for s in samples if s["temperature"] == float(t))
        for t in spec.temperatures
    }
    return {
        "settings": {
            "prompts": list(spec.prompts),
            "temperatures": [float(t) for t in spec.temperatures],
            "max_new_tokens": spec.max_new_tokens,
            "samples_per_setting": spec.samples_per_setting,
            "top_k": spec.top_k,
            "seed": seed,
            "english": "wordfreq English list; a word with no entry counts as unknown",
        },
        "samples": samples,
        "by_temperature": by_temperature,
        "mean": mean_measures(samples),
    }


def _key(temperature: float) -> str:
    return f"{float(temperature):g}"
