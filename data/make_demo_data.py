"""Write wake2vec's synthetic demo data: a morpheme list, a lexicon of coinages and a corpus.

Run from the repository root:  python data/make_demo_data.py

The output is deterministic (one seeded random generator, no set iteration) and is committed,
so the script is only re-run when the word lists below change. It needs ``wordfreq`` (a wake2vec
dependency) to keep ordinary English words out of the lexicon.
"""

from __future__ import annotations

import argparse
import csv
import random
import textwrap
from pathlib import Path

SEED = 1939
HERE = Path(__file__).resolve().parent
HOMAGE = "riverrun, past Eve and Adam's,"

# --------------------------------------------------------------------------- morphemes
# Each morpheme with ten ordinary English words that contain it.

PREFIXES: dict[str, list[str]] = {
    "re": "return replay rebuild retell rewrite reread reopen refill rethink rewind",
    "un": "undo unkind unlock unfold untie unhappy unseen unwrap unknown unfair",
    "dis": "dislike disagree disappear disarm discover disorder dishonest distrust disown disable",
    "pre": "preview prepay preheat prefix preschool presume prewar prejudge preset pretest",
    "mis": "mistake misread misplace mislead misspell misuse misjudge misfit mistrust misprint",
    "over": "overflow overtake overlook overcome overdue overhead overnight overturn overcast overgrown",
    "under": "undergo underline underground understand underwater undertake underfoot underdog underscore underworld",
    "out": "outside outcome outrun outgrow outlast outline outlaw outpost outwit outcast",
    "in": "inside income inland indoor input inborn inlay inmost insight inward",
    "non": "nonstop nonsense nonfiction nonprofit nonverbal nonzero nonlinear nonmember nonviolent nonessential",
    "anti": "antibody antidote antifreeze antiwar antiviral antisocial anticlimax antihero antibiotic antiseptic",
    "sub": "subway submarine subtitle subset subtotal subsoil subzero subheading subgroup subplot",
    "super": "superman supermarket superstar supervise superhero supernatural superpower superego supersonic superfine",
    "inter": "internet interact interview interval intercept interchange interfere interlude interplay intertwine",
    "trans": "transport transfer transform translate transplant transmit transit transatlantic transcribe transpose",
    "counter": "counteract counterpart counterweight countersign counterfeit counterpoint counterbalance counterclaim counterattack countermand",
    "fore": "forecast forehead foresee foretell forefather foreground forewarn forerunner foremost forearm",
    "co": "coauthor cooperate coexist copilot coworker costar cosign coeditor cofounder coheir",
    "de": "defrost decode devalue deform detour dethrone debug degrade derail demerit",
    "en": "enable enlarge endanger enrich encircle enclose encode enforce engulf enslave",
    "be": "befriend belittle bewitch bedazzle bemoan besiege bestow betide bewail becalm",
    "mid": "midnight midway midday midsummer midwinter midterm midfield midstream midpoint midweek",
    "post": "postwar postpone postscript postdate postgraduate postmark postseason postnatal postlude postmodern",
    "semi": "semicircle semifinal semicolon semisweet semiannual semiformal semiprecious semiskilled semitone semiweekly",
    "mal": "malfunction malpractice malnutrition maltreat malcontent malformed malodorous malady malware maladroit",
}

SUFFIXES: dict[str, list[str]] = {
    "ing": "singing running reading walking talking sleeping dreaming falling calling swimming",
    "ed": "walked jumped played wanted opened turned called rained filled laughed",
    "er": "teacher painter singer farmer baker writer runner speaker dancer player",
    "est": "greatest smallest fastest oldest longest highest darkest softest brightest coldest",
    "ly": "quickly slowly softly loudly kindly gladly badly bravely calmly lightly",
    "ness": "kindness darkness sadness goodness illness weakness fitness softness boldness calmness",
    "ful": "careful helpful hopeful playful thankful joyful useful painful peaceful restful",
    "less": "careless homeless endless helpless fearless hopeless sleepless restless timeless useless",
    "able": "readable washable breakable movable lovable drinkable payable workable likable laughable",
    "ment": "movement payment agreement enjoyment statement treatment argument shipment amazement placement",
    "tion": "action nation motion station relation creation education section question mention",
    "ous": "famous dangerous joyous nervous curious generous glorious riotous poisonous mountainous",
    "ish": "childish foolish selfish reddish bookish feverish boyish stylish greenish sheepish",
    "ize": "realize organize modernize finalize memorize visualize criticize summarize apologize sympathize",
    "ist": "artist pianist tourist florist novelist scientist cyclist dentist guitarist violinist",
    "ism": "heroism realism tourism criticism optimism journalism idealism terrorism symbolism patriotism",
    "ity": "reality activity ability quality purity clarity humanity security majority electricity",
    "ward": "homeward backward forward upward downward inward outward seaward skyward eastward",
    "dom": "kingdom freedom wisdom boredom stardom martyrdom fiefdom serfdom officialdom dukedom",
    "hood": "childhood neighborhood brotherhood manhood motherhood likelihood falsehood parenthood knighthood sisterhood",
    "ship": "friendship hardship leadership ownership membership partnership scholarship citizenship relationship worship",
    "some": "handsome lonesome awesome tiresome troublesome wholesome fearsome quarrelsome bothersome meddlesome",
    "en": "golden wooden broken spoken frozen woven fallen hidden darken soften",
    "ling": "duckling darling seedling sapling hireling starling fledgling gosling nestling yearling",
    "ery": "bakery brewery slavery bravery nursery fishery pottery robbery scenery trickery",
}

# --------------------------------------------------------------------------- English words
# Roots for compositions and blends, and the plain words of the corpus sentences.


def words(text: str) -> list[str]:
    return text.split()


ROOTS = words(
    "river run thunder night dream word letter tower bridge stone tree water sleep laugh song bell "
    "fall wake sea moon hill rain wind fire smoke mother father storm shadow garden church castle "
    "harbour ocean mountain whisper bottle kettle window market ladder hammer lantern meadow candle "
    "feather apple butter milk honey thistle willow island travel sorrow gossip murmur tumble wander "
    "giant finger mirror penny silver copper bridle saddle hunter pilgrim tailor sailor soldier "
    "sister brother cousin widow ghost angel devil kingdom season winter summer morning evening"
)

NOUNS = words(
    "river hill city bridge tower church house door window road street field garden wall stone "
    "tree leaf bird hen fish boat ship sea shore wave wind rain storm cloud sky sun moon star night "
    "morning evening day year word letter name book page story song voice bell drum clock hour "
    "mother father brother sister child man woman king queen giant ghost family people crowd "
    "market tavern table bottle glass cup bread butter milk tea apple hat coat shoe hand head "
    "eye ear mouth heart dream memory shadow light fire smoke water mud dust ash grass"
)

ADJECTIVES = words(
    "old young little great long short dark bright green brown grey golden silver quiet loud "
    "gentle wild strange sleepy happy sad merry bitter sweet heavy soft hard cold warm wet dry "
    "deep high low broad narrow ancient early late proud humble lonely holy foolish clever tired"
)

VERBS_PAST = words(
    "ran fell rose sang said went came saw heard knew thought told wrote read found lost kept "
    "left brought built broke carried called climbed crossed danced dreamed drank dropped filled "
    "followed gathered hid held hoped jumped laughed listened lived looked loved moved opened "
    "passed played pulled rang remembered rolled sat shook slept spoke stood turned waited walked "
    "wandered watched whispered wished wondered"
)

VERBS_ING = words(
    "running falling singing talking dreaming sleeping walking laughing turning waiting "
    "wandering listening whispering rolling crossing climbing dancing drinking"
)

ADVERBS = words(
    "slowly quickly softly loudly gently again always never once often still yet soon then "
    "there here away back forward home together alone"
)

PREPOSITIONS = words(
    "in on by to from with under over past through along across behind beside near"
)
DETERMINERS = words("the the the a his her their our that this every some")
PLACES = words("Dublin Howth Chapelizod Liffey Phoenix Eden Kerry Lucan")
NAMES = words("Anna Tim Kate Shem Shaun Issy Humphrey Livia Finn Joe")

ACCENTS = {"a": "àá", "e": "éè", "i": "ìí", "o": "òó", "u": "ùú"}
APOSTROPHE_HEADS = ("o", "mac", "d", "l", "th")


# --------------------------------------------------------------------------- lexicon


def is_english(word: str, known: set[str]) -> bool:
    """Whether ``word`` is an ordinary English word (so it must stay out of the lexicon)."""
    from wordfreq import zipf_frequency

    return word in known or zipf_frequency(word, "en") > 0.0


def blend(a: str, b: str, rng: random.Random) -> str:
    """A portmanteau of ``a`` and ``b``: overlap them where one ends as the other begins, else
    pivot on a letter they share, keeping a good part of each, else run them together."""
    for k in range(min(len(a), len(b)) - 1, 1, -1):
        if a.endswith(b[:k]):
            return a + b[k:]
    pivots = [
        (i, j)
        for i in range(max(2, (len(a) * 2 + 4) // 5), len(a))
        for j in range(0, (len(b) * 3) // 5 + 1)
        if a[i] == b[j] and len(b) - j >= 3
    ]
    if pivots:
        i, j = rng.choice(pivots)
        return a[:i] + b[j:]
    return a + b


def accent(word: str, rng: random.Random) -> str:
    """Put an accent on one vowel of ``word``, preferring a late one (``riverrùn``)."""
    spots = [i for i, ch in enumerate(word) if ch in ACCENTS]
    if not spots:
        return word
    i = spots[-1] if rng.random() < 0.6 else rng.choice(spots)
    return word[:i] + rng.choice(ACCENTS[word[i]]) + word[i + 1 :]


def make_lexicon(rng: random.Random, size: int) -> list[str]:
    """Coinages made by composition, blending, accents, apostrophes and hyphens."""
    known = {w for words in PREFIXES.values() for w in words.split()}
    known |= {w for words in SUFFIXES.values() for w in words.split()}
    known |= set(ROOTS) | set(NOUNS) | set(ADJECTIVES) | set(VERBS_PAST) | set(VERBS_ING)
    prefixes, suffixes = sorted(PREFIXES), sorted(SUFFIXES)
    words: dict[str, None] = {"riverrùn": None}  # insertion-ordered set

    def keep(word: str) -> bool:
        if word in words or not 6 <= len(word) <= 22:
            return False
        if is_english(word, known) or is_english(word.replace("-", "").replace("'", ""), known):
            return False
        words[word] = None
        return True

    quotas = {"composed": size * 40 // 100, "blend": size * 35 // 100}
    while sum(1 for _ in words) < quotas["composed"]:
        root = rng.choice(ROOTS)
        shape = rng.random()
        if shape < 0.45:
            keep(rng.choice(prefixes) + root + rng.choice(suffixes))
        elif shape < 0.75:
            keep(rng.choice(prefixes) + root)
        else:
            keep(root + rng.choice(suffixes))
    target = quotas["composed"] + quotas["blend"]
    pool = ROOTS + NOUNS + ADJECTIVES
    while len(words) < target:
        a, b = rng.choice(pool), rng.choice(pool)
        if a != b and len(a) + len(b) >= 7:
            keep(blend(a, b, rng))
    base = list(words)
    while len(words) < size:
        kind = rng.random()
        if kind < 0.45:
            keep(accent(rng.choice(base), rng))
        elif kind < 0.7:
            keep(f"{rng.choice(APOSTROPHE_HEADS)}'{rng.choice(base)}")
        else:
            first, second = rng.choice(ROOTS), rng.choice(base)
            keep(f"{first}-{second}")
    return sorted(words)


# --------------------------------------------------------------------------- corpus


class Sentences:
    """Sentence templates filled with English words and lexicon words taken from a shuffled
    schedule, so every lexicon word is used several times in many positions."""

    def __init__(self, lexicon: list[str], uses: int, rng: random.Random):
        self.rng = rng
        self.schedule = [w for w in lexicon for _ in range(uses)]
        rng.shuffle(self.schedule)

    def lex(self) -> str:
        if not self.schedule:
            return self.rng.choice(ROOTS) + self.rng.choice(sorted(SUFFIXES))
        return self.schedule.pop()

    def np(self) -> str:
        r = self.rng
        if r.random() < 0.3:
            return f"{r.choice(DETERMINERS)} {r.choice(ADJECTIVES)} {r.choice(NOUNS)}"
        return f"{r.choice(DETERMINERS)} {r.choice(NOUNS)}"

    def sentence(self) -> str:
        r, lex, np = self.rng, self.lex, self.np
        v, adv, prep = r.choice(VERBS_PAST), r.choice(ADVERBS), r.choice(PREPOSITIONS)
        templates = [
            lambda: f"{lex()} {v} {prep} {np()}.",
            lambda: f"{np().capitalize()} {v} {adv}, {lex()} and {lex()}.",
            lambda: (
                f'"{lex()}," {r.choice(["said", "sang", "whispered", "cried"])} {r.choice(NAMES)}.'
            ),
            lambda: (
                f"{r.choice(NAMES)} {v} {prep} the {lex()} ({lex()}, {r.choice(['said', 'mind'])} you) {adv}."
            ),
            lambda: (
                f"And {np()} was {r.choice(VERBS_ING)} {prep} {r.choice(PLACES)}, {lex()} by {lex()}."
            ),
            lambda: f"{lex()}, {lex()}, {r.choice(VERBS_ING)} {adv}!",
            lambda: f"Was it {lex()} or {np()} that {v} {prep} {np()}?",
            lambda: f"{np().capitalize()} of {lex()} {v}; {lex()} {r.choice(VERBS_PAST)} {adv}.",
            lambda: f"O {lex()}, {r.choice(ADJECTIVES)} {lex()}, tell me of {np()}.",
            lambda: f"Then {r.choice(NAMES)} {v} '{lex()}' {prep} {np()} of {r.choice(PLACES)}.",
            lambda: f"{np().capitalize()} {v} {prep} {np()} {adv} (so {lex()}).",
            lambda: f"{lex()}: {np()}, {np()} and {lex()} {r.choice(VERBS_ING)}.",
            lambda: f"By {r.choice(PLACES)} {np()} {v}, {r.choice(ADJECTIVES)} and {lex()}.",
            lambda: f"{r.choice(NAMES)} {v} {adv} {prep} {np()}, {r.choice(VERBS_ING)} {lex()}.",
        ]
        return r.choice(templates)()

    def paragraph(self) -> str:
        sentences = [self.sentence() for _ in range(self.rng.randint(3, 9))]
        return textwrap.fill(
            " ".join(sentences), width=72, break_on_hyphens=False, break_long_words=False
        )


def make_corpus(lexicon: list[str], rng: random.Random, target_bytes: int) -> str:
    """Paragraphs of Wake-style text, opening with the book's first words as an homage."""
    uses = 8
    maker = Sentences(lexicon, uses, rng)
    opening = (
        f"{HOMAGE} {maker.np()} {rng.choice(VERBS_PAST)} {rng.choice(PREPOSITIONS)} {maker.np()}, "
        f"{maker.lex()} and {maker.lex()}, to {maker.lex()} of {rng.choice(PLACES)}. "
        f"{maker.sentence()} {maker.sentence()}"
    )
    paragraphs = [textwrap.fill(opening, width=72, break_on_hyphens=False, break_long_words=False)]
    size = len(paragraphs[0].encode())
    while maker.schedule or size < target_bytes:
        paragraphs.append(maker.paragraph())
        size += len(paragraphs[-1].encode()) + 2
    return "\n\n".join(paragraphs) + "\n"


# --------------------------------------------------------------------------- output


def write_morphemes(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["type", "morpheme"] + [f"example{i}" for i in range(1, 11)])
        for kind, table in (("prefix", PREFIXES), ("suffix", SUFFIXES)):
            for morpheme, examples in table.items():
                words = examples.split()
                assert len(words) == 10 and all(morpheme in w for w in words), morpheme
                writer.writerow([kind, morpheme, *words])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: data/)")
    parser.add_argument("--lexicon-size", type=int, default=480)
    parser.add_argument("--corpus-bytes", type=int, default=200_000)
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    write_morphemes(args.out / "demo_morphemes.csv")
    lexicon = make_lexicon(rng, args.lexicon_size)
    (args.out / "demo_lexicon.txt").write_text("\n".join(lexicon) + "\n", encoding="utf-8")
    corpus = make_corpus(lexicon, rng, args.corpus_bytes)
    (args.out / "demo_corpus.txt").write_text(corpus, encoding="utf-8")
    print(f"wrote {args.out}: {len(lexicon)} lexicon words, {len(corpus.encode()):,} corpus bytes")


if __name__ == "__main__":
    main()
