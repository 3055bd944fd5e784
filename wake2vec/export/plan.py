"""How a run's new words enter llama.cpp's own tokenizer, mapped onto the rows the run trained.

llama.cpp does not run a Hugging Face normalizer, so the whole-word injector's added tokens
(which end in U+FDD0 and rely on that normalizer) are never produced there. What llama.cpp does
run is its pre-tokenizer and then the vocabulary's own merge rule:

* byte-level BPE (``gpt2`` vocabularies: SmolLM2, Qwen, GPT-2): adjacent pieces whose pair is
  in the merge list are joined, lowest rank first;
* SentencePiece (``llama`` vocabularies: Llama-2, Mistral): adjacent pieces whose concatenation
  is in the vocabulary are joined, highest score first.

Each word form (after a space; bare, after a newline or punctuation) is planned from the pieces
llama.cpp's *base* tokenizer cuts it into in that context: a left-to-right chain of joins,
simulated under the vocabulary's own rule after each join, each ranked after every base merge
(BPE: appended to the merge list; SentencePiece: scored below every base piece), so in any text
the base segmentation is reached first and only an exact run of a chain's pieces is joined
further. A chain over n pieces needs n - 2 intermediate strings ("pieces"); they get new ids
after the model's rows, and rows that are the mean of the rows they join. Forms are planned
shortest first; a later chain never breaks an earlier one (it ranks after it).

Where llama.cpp looks each pre-tokenizer chunk up whole before it merges anything (the
byte-level pre-tokenizer types of ``WHOLE_CHUNK_PRE``: Llama-3 among them), a form needs no
merge: after a space, at a line start or after two marks it is a chunk of its own, and its
string alone makes it one id there and nowhere else, so it cannot fire inside a longer word.
After a single mark, which that pre-tokenizer glues to the word, the chunk is merged instead:
where the vocabulary's merges keep marks apart (SmolLM2's read as ``llama-bpe``), a bare form
also gets its chain if that fires inside none of the risk probe's words; elsewhere it is not
reached there.

What merges cannot express is left to llama.cpp's user-defined tokens, matched verbatim in the
raw text (byte-level only: a word the pre-tokenizer splits, such as "magrath's"), or reported
as not exported with the reason (the base vocabulary already holds the form as one token; a
SentencePiece form with byte-fallback pieces).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

SPACE, BARE = "space", "bare"
MERGES, USER_DEFINED, WHOLE = "merges", "user-defined", "whole-chunk"
# the pre-tokenizer types for which llama.cpp (llama-cpp-python 0.3.36's llama-vocab.cpp) takes a
# chunk that is a vocabulary string whole, before any merge (Hugging Face's ``ignore_merges``)
WHOLE_CHUNK_PRE = frozenset({
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
    "jina-v5-nano", "minicpm5", "youtu", "glm4", "glm5", "tekken", "granite-embed-multi-97m"})
CONTEXT = {SPACE: ("a", " "), BARE: ("\n", "")}  # (text before, joiner) selecting each form


@dataclass
class Form:
    word: str
    form: str  # SPACE | BARE
    id: int  # the id the run trained
    pieces: list[int] = field(default_factory=list)  # llama.cpp's base ids in context
    text: str = ""  # the new vocabulary string (pieces' strings joined)
    how: str = ""  # MERGES | WHOLE | USER_DEFINED | "" (not exported)
    reason: str = ""  # why not exported, or why user-defined

    @property
    def raw(self) -> str:
        """The form as raw text (what a user-defined token matches)."""
        return (" " if self.form == SPACE else "") + self.word


@dataclass
class VocabFacts:
    """The base tokenizer llama.cpp runs, read from a GGUF."""

    model: str  # "gpt2" (byte-level BPE) | "llama" (SentencePiece)
    tokens: list[str]
    types: list[int]
    scores: list[float]  # empty for BPE
    merges: list[str]  # "a b", empty for SentencePiece
    pre: str = ""  # llama.cpp's pre-tokenizer type (``tokenizer.ggml.pre``)

    @property
    def whole_chunks(self) -> bool:
        """llama.cpp takes a chunk that is a vocabulary string whole, before merging."""
        return self.model == "gpt2" and self.pre in WHOLE_CHUNK_PRE

    @property
    def glued_chains(self) -> bool:
        """Read chunk by chunk, a bare form right after one mark or a tab ("(word", which the
        pre-tokenizer glues together) is merged, not looked up; where no merge joins a mark to a
        letter (vocabularies trained with marks apart: SmolLM2, GPT-2) the form's own chain
        reaches it there. Llama-3's and Qwen's merges join them ("(in", ".get")."""
        import string

        marks = set(string.punctuation) - {"'"}  # "'" joins letters in clitics ("'s", "'t")
        return self.whole_chunks and not any(
            a[-1:] in marks and b[:1].isascii() and b[:1].isalpha()
            for a, b in (m.split(" ", 1) for m in self.merges))


@dataclass
class Plan:
    forms: list[Form]
    strings: dict[str, int] = field(default_factory=dict)  # new vocabulary string -> id
    pieces: dict[int, list[int]] = field(default_factory=dict)  # piece id -> base ids it joins
    merges: list[str] = field(default_factory=list)  # BPE: appended to the merge list
    scores: dict[str, float] = field(default_factory=dict)  # SentencePiece: new string -> score
    risk: float = 0.0  # spurious ids per word of ordinary English the kept joins would make

    def exported(self) -> list[Form]:
        return [f for f in self.forms if f.how]


BYTE_TYPE = 6  # llama.cpp's LLAMA_TOKEN_TYPE_BYTE
MIN_VERBATIM = 4  # shorter words never become user-defined tokens (they match too much)
FOLLOWS, RARE = 1e-2, 1e-4  # how often a clitic / a longer rest follows a word (user-defined)
CLITICS = frozenset({"'s", "'d", "'ll", "'re", "'ve", "'m", "'t", "s'", "'", "-"})


def _join(symbols: list[str], priority: Callable[[str, str], float | None]) -> list[str]:
    """Join adjacent symbols by ``priority`` (smaller first, leftmost on ties) until no pair
    has one: BPE and SentencePiece both reduce to this once the base pieces are reached."""
    symbols = list(symbols)
    while len(symbols) > 1:
        best: tuple[float, int] | None = None
        for i in range(len(symbols) - 1):
            p = priority(symbols[i], symbols[i + 1])
            if p is not None and (best is None or p < best[0]):
                best = (p, i)
        if best is None:
            break
        i = best[1]
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


class _Rule:
    """The vocabulary's merge rule with the joins planned so far."""

    def __init__(self, facts: VocabFacts):
        self.bpe = facts.model == "gpt2"
        self.vocab = {t: i for i, t in enumerate(facts.tokens)}
        if self.bpe:
            self.ranks = {tuple(m.split(" ", 1)): r for r, m in reversed(list(enumerate(facts.merges)))}
            self.next = float(len(facts.merges))
        else:
            self.score = {t: s for t, s in zip(facts.tokens, facts.scores, strict=True)}
            self.next = -(min(facts.scores, default=0.0) - 1.0)  # priority = -score
        self.trial: dict = {}

    def priority(self, a: str, b: str) -> float | None:
        if self.bpe:
            found = self.ranks.get((a, b))
            return found if found is not None else self.trial.get((a, b))
        found = self.score.get(a + b)
        return -found if found is not None else self.trial.get(a + b)

    def propose(self, a: str, b: str) -> None:
        key = (a, b) if self.bpe else a + b
        if key not in self.trial:
            self.trial[key] = self.next
            self.next += 1.0

    def commit(self, plan: Plan) -> None:
        for key, priority in self.trial.items():
            if self.bpe:
                self.ranks[key] = priority
                plan.merges.append(f"{key[0]} {key[1]}")
            else:
                self.score[key] = -priority
                plan.scores[key] = -priority
        self.trial = {}


def plan_forms(facts: VocabFacts, forms: list[Form], first_piece_id: int,
               risk: Risk | None = None) -> Plan:
    """Plan merges for the forms that have pieces and no reason against them yet; forms the
    chains cannot build keep a reason and no ``how``.

    Each chain follows the binary tree over the form's pieces whose intermediates have the
    least risk: how often a run of base ids stands in ordinary words (``Risk``),
    where an intermediate would be left as a spurious piece ("cousin" + "butter" is joined
    through "inbut", not through "cousin" or "butter")."""
    rule = _Rule(facts)
    plan = Plan(forms=forms)
    made: dict[str, Form] = {}  # every string a committed join makes -> the form it serves
    chained = (f for f in forms if f.pieces and not f.reason and f.how != WHOLE)
    for f in sorted(chained, key=lambda f: len(f.pieces)):
        strings = [facts.tokens[p] for p in f.pieces]
        nodes, _ = _tree(f.pieces, strings, risk)
        current = _join(strings, rule.priority)
        while len(current) > 1:
            pairs = [(nodes.get(a + b, len(f.text)), i)
                     for i, (a, b) in enumerate(zip(current, current[1:], strict=False))]
            _, i = min(pairs)  # the smallest join of the tree there is, else the leftmost
            rule.propose(current[i], current[i + 1])
            current = _join(current, rule.priority)
        if current != [f.text]:  # not expected: the chain is built by this very simulation
            rule.trial = {}
            if facts.whole_chunks:  # a chunk of its own still takes the string whole
                f.how = WHOLE
            else:
                f.reason = f"earlier chains join its pieces differently ({current})"
            continue
        for key in rule.trial:
            made.setdefault(key[0] + key[1] if rule.bpe else key, f)
        rule.commit(plan)
        f.how = MERGES
    for f in forms:
        if f.how in (MERGES, WHOLE):
            plan.strings[f.text] = f.id
    for text, f in made.items():  # intermediates: new ids after the model's rows
        if text not in rule.vocab and text not in plan.strings:
            plan.strings[text] = first_piece_id + len(plan.pieces)
            plan.pieces[plan.strings[text]] = _constituents(text, f, facts)
    return plan


def _tree(pieces: list[int], strings: list[str], risk: Risk | None
          ) -> tuple[dict[str, int], float]:
    """The joins of the binary tree over ``pieces`` whose intermediates (the runs it joins on
    the way, not the pieces nor the whole) have the least summed risk, as string -> length in
    pieces (joined smallest first), and that risk. Without ``risk``: left to right."""
    n = len(pieces)
    if risk is None:
        return {"".join(strings[:k]): k for k in range(2, n + 1)}, 0.0
    best: dict[tuple[int, int], tuple[float, int]] = {}  # (i, j) -> (cost, split)
    for length in range(2, n + 1):
        for i in range(n - length + 1):
            j = i + length
            own = risk.run(tuple(pieces[i:j])) if length < n else 0.0
            best[i, j] = min((best.get((i, m), (0.0, 0))[0] + best.get((m, j), (0.0, 0))[0]
                              + own, m) for m in range(i + 1, j))
    nodes: dict[str, int] = {}
    stack = [(0, n)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        nodes["".join(strings[i:j])] = j - i
        m = best[i, j][1]
        stack += [(i, m), (m, j)]
    return nodes, best[0, n][0]


class Risk:
    """Where new joins would fire in ordinary words: ``words`` (word, frequency), tokenised by
    llama.cpp's base vocabulary after a space and bare. A run of base ids left joined in a word
    that is not a lexicon word is a spurious id; its risk is the summed frequency of the words
    holding it (per word of text). Without ``tokenize`` (a vocabulary llama.cpp reads chunk by
    chunk, where no join is added) only the letter counts are kept."""

    def __init__(self, tokenize: Callable[[str], list[int]] | None, prefix: dict[str, list[int]],
                 words: list[tuple[str, float]], longest: int = 8):
        from collections import Counter

        self.whole: Counter[tuple[int, ...]] = Counter()  # a word's pieces, all of them
        self.within: Counter[tuple[int, ...]] = Counter()  # a run inside a longer word
        self.endings: Counter[str] = Counter()  # how often words end in these letters
        self.starts: Counter[str] = Counter()  # ... begin with them (a longer word)
        self.inner: Counter[str] = Counter()  # ... hold them, not as the whole word
        for word, weight in words:
            for i in range(1, len(word)):
                self.endings[word[i:]] += weight
                self.starts[word[:i]] += weight
            for i in range(len(word)):
                for j in range(i + MIN_VERBATIM, len(word) + 1):
                    if j - i < len(word):
                        self.inner[word[i:j]] += weight
            for form, (lead, joiner) in CONTEXT.items() if tokenize else ():
                ids = tokenize(lead + joiner + word)[len(prefix[form]):]
                self.whole[tuple(ids)] += weight
                for i in range(len(ids)):
                    for j in range(i + 2, min(len(ids), i + longest) + 1):
                        if j - i < len(ids):
                            self.within[tuple(ids[i:j])] += weight

    def run(self, ids: tuple[int, ...]) -> float:
        """An intermediate is spurious wherever its run stands, as a whole word too."""
        return self.within.get(ids, 0.0) + self.whole.get(ids, 0.0)

    def verbatim(self, f: Form) -> float:
        """A user-defined token for the whole form matches inside longer words: after a
        space, words beginning with it; bare, words holding it."""
        return (self.starts if f.form == SPACE else self.inner).get(f.word, 0.0)

    def inside(self, ids: tuple[int, ...]) -> float:
        """A form's whole chain fires inside longer words (as a whole word it is the word)."""
        return self.within.get(ids, 0.0)

    def ending(self, head: str, rest: str) -> float:
        """A bare user-defined token ``head + rest`` matches wherever a word ends in ``head``
        and ``rest`` follows: a clitic ("r's" in "founter's") about one word in a hundred, a
        longer rest ("o'meadowen") about as seldom as a rare word."""
        return self.endings.get(head, 0.0) * (FOLLOWS if rest in CLITICS else RARE)


def choose(facts: VocabFacts, forms: list[Form], risk: Risk, limit: float,
           lexicon: set[str] | None = None) -> float:
    """Leave out each form whose joins would fire in ordinary words more often than ``limit``
    per word of text (about how often one lexicon word stands in a Wake text, so it would
    cost more than it gives); a bare user-defined token likewise, by how often ordinary words
    end in the letters it starts with ("r's" inside "founter's"). A form whose joins are risky
    but whose whole text seldom stands inside other words (and inside no other lexicon word)
    becomes a user-defined token instead. Where llama.cpp takes whole chunks, a form is one
    (``WHOLE``, no risk). Returns the risk kept."""
    inner = _lexicon_inner(lexicon or set())
    kept, glued = 0.0, facts.glued_chains
    for f in forms:
        if f.how == USER_DEFINED and f.form == BARE:
            head = f.word[: next((i for i, c in enumerate(f.word) if not c.isalpha()),
                                 len(f.word))]
            cost = risk.ending(head, f.word[len(head):]) if head else 1.0
            if cost > limit:
                f.how = ""
                f.reason = f"a user-defined token would match inside other words ({cost:.1e} per word)"
            else:
                kept += cost
        elif f.pieces and not f.reason and facts.whole_chunks:
            # a chunk of its own after a space, at a line start, after two marks: looked up
            # whole, never merged into, so no risk. After one mark, which the pre-tokenizer
            # glues on, the chunk is merged: where the merges keep marks apart a bare form's
            # chain reaches it, and is added if it never fires inside the probe's words (a
            # bonus over the whole string, it must cost nothing); where they join a mark to
            # the first letters ("(in", "\"w" are Llama-3 tokens) only a user-defined token
            # would, and llama.cpp scans every one of those for every stretch of text
            f.how = WHOLE
            if f.form == BARE and glued and _chain_risk(f, facts, risk) == 0.0:
                f.how = MERGES
        elif f.pieces and not f.reason:
            cost = _chain_risk(f, facts, risk)
            if (cost > 0 and facts.model == "gpt2" and len(f.word) >= MIN_VERBATIM
                    and f.word not in inner[f.form]):
                verbatim = risk.verbatim(f)
                if verbatim < cost:
                    f.pieces, f.how, cost = [], USER_DEFINED, verbatim
                    f.reason = "its joins would fire in ordinary words; a user-defined token matches it"
            if cost > limit:
                f.how, f.reason = "", f"its joins would fire in ordinary words ({cost:.1e} per word)"
            else:
                kept += cost
    # a bare user-defined token would also match inside the word's after-a-space form, so that
    # form has to be one too (the longer token matches first)
    bare_verbatim = {f.word for f in forms if f.form == BARE and f.how == USER_DEFINED}
    for f in forms:
        if f.form == SPACE and f.pieces and not f.reason and f.word in bare_verbatim:  # WHOLE too
            f.pieces, f.how = [], USER_DEFINED
            f.reason = "its bare form is a user-defined token"
    return kept


def _chain_risk(f: Form, facts: VocabFacts, risk: Risk) -> float:
    """How often a form's chain (the least risky shape) would fire in ordinary words."""
    _, tree = _tree(f.pieces, [facts.tokens[p] for p in f.pieces], risk)
    return risk.inside(tuple(f.pieces)) + tree


def _lexicon_inner(lexicon: set[str]) -> dict[str, set[str]]:
    """Texts that stand inside a longer lexicon word: at its start (where a user-defined token
    after a space would break it) and anywhere (bare)."""
    starts: set[str] = set()
    anywhere: set[str] = set()
    for word in lexicon:
        for i in range(len(word)):
            for j in range(i + MIN_VERBATIM, len(word) + 1):
                if j - i < len(word):
                    anywhere.add(word[i:j])
                    if i == 0:
                        starts.add(word[i:j])
    return {SPACE: starts, BARE: anywhere}


def _constituents(text: str, f: Form, facts: VocabFacts) -> list[int]:
    """The base ids a piece of ``f``'s chain joins (a run of ``f``'s pieces)."""
    strings = [facts.tokens[p] for p in f.pieces]
    for i in range(len(strings)):
        joined = ""
        for j in range(i, len(strings)):
            joined += strings[j]
            if joined == text:
                return f.pieces[i : j + 1]
    return list(f.pieces)


def screen(facts: VocabFacts, forms: list[Form], prefix_ids: dict[str, list[int]],
           in_context: dict[tuple[str, str], list[int]]) -> None:
    """Give each form its base pieces and text, or a reason it cannot be planned (then, for
    byte-level vocabularies, a user-defined token where that is safe)."""
    vocab = {t: i for i, t in enumerate(facts.tokens)}
    for f in forms:
        ids = in_context[f.word, f.form]
        lead = prefix_ids[f.form]
        if ids[: len(lead)] != lead:
            f.reason = "its context's tokens change around it"
            continue
        f.pieces = ids[len(lead):]
        f.text = "".join(facts.tokens[p] for p in f.pieces)
        if facts.model == "gpt2" and not f.word.isalpha():
            f.pieces, f.how = [], USER_DEFINED
            f.reason = "llama.cpp's pre-tokenizer splits it; a user-defined token matches it"
        elif len(f.pieces) < 2:
            f.reason = "llama.cpp's base vocabulary already holds it as one token"
        elif f.text in vocab:
            f.reason = f"the base vocabulary holds {f.text!r} but never builds it"
        elif any(facts.types[p] == BYTE_TYPE for p in f.pieces):
            f.reason = "characters outside the vocabulary (byte fallback)"
