"""Text cleaning, lexicon mining (extraction, Zipf ceiling, fragments) and ``wake2vec lexicon build``."""

from __future__ import annotations

import csv
import io
import unicodedata

import pytest
from click.testing import CliRunner

from wake2vec.cli import cli
from wake2vec.vocab.lexicon_build import build_lexicon, count_words
from wake2vec.vocab.textclean import clean_text

GUTENBERG = """\ufeffThe Project Gutenberg eBook of Finnegans Wake\r
This eBook is for the use of anyone anywhere.\r
\r
*** START OF THE PROJECT GUTENBERG EBOOK FINNEGANS WAKE ***\r
\r
Produced by Some Volunteers\r
and the Online Proofreading Team\r
\r
riverrun,  past Eve and  Adam's, from swerve of shore to bend   \r
of bay, passen-\r
core rearrived by a commodius vicus.\r
\r
\r
\r
Sir Tristram, violer d'amores, fr'over the short sea.\r
\r
End of the Project Gutenberg EBook of Finnegans Wake\r
\r
*** END OF THE PROJECT GUTENBERG EBOOK FINNEGANS WAKE ***\r
\r
Section 1. General Terms of Use and Redistributing Project Gutenberg-tm\r
electronic works. LICENSE AND DONATIONS.\r
"""


# --------------------------------------------------------------------------- cleaning


def test_clean_removes_banner_footer_and_licence():
    cleaned = clean_text(GUTENBERG)
    assert cleaned.startswith("riverrun, past Eve and Adam's, from swerve of shore to bend\n")
    for gone in ("Project Gutenberg", "START OF", "END OF", "LICENSE", "Produced by", "\ufeff", "\r"):
        assert gone not in cleaned
    assert cleaned.endswith("fr'over the short sea.\n")


def test_clean_rejoins_hyphenation_only_before_lowercase():
    cleaned = clean_text(GUTENBERG)
    assert "passencore rearrived" in cleaned
    assert "passen-" not in cleaned
    # a capital after the break is a name or a real compound: left alone
    assert clean_text("Anna-\nLivia Plurabelle\n") == "Anna-\nLivia Plurabelle\n"
    # hyphens within a line stay
    assert clean_text("a mother-in-law and fall-gardeepy\n") == "a mother-in-law and fall-gardeepy\n"
    # a compound the text writes hyphenated elsewhere keeps its hyphen across the break
    assert "fall-gardeepy and" in clean_text("the fall-gardeepy, the fall-\ngardeepy and\n")


def test_clean_whitespace_keeps_paragraphs():
    cleaned = clean_text(GUTENBERG)
    assert "  " not in cleaned
    assert all(line == line.strip() for line in cleaned.split("\n"))
    # the three blank lines between paragraphs become one; the single line break stays
    assert "vicus.\n\nSir Tristram" in cleaned
    assert "to bend\nof bay" in cleaned
    assert clean_text("a\t b\u00a0 c   \n\n\n\nd  \n") == "a b c\n\nd\n"


def test_clean_normalises_nfd_to_nfc():
    nfd = unicodedata.normalize("NFD", "générations of chérie\n")
    assert nfd != "générations of chérie\n"
    assert clean_text(nfd) == "générations of chérie\n"


def test_clean_without_markers_keeps_everything():
    text = "Not a *** START OF anything, just text.\n*** END OF PART ONE ***\nOn three lines.\n"
    assert clean_text(text) == text
    old_style = "Small print.\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\nThe book.\n"
    assert clean_text(old_style) == "The book.\n"


# --------------------------------------------------------------------------- extraction and filters


def test_extraction_keeps_accents_apostrophes_and_hyphens():
    counts = count_words("Générations o'wetnarrow fall-gardeepy 'ashost' shem’s -dash- CAPS word2vec")
    assert set(counts) == {"générations", "o'wetnarrow", "fall-gardeepy", "ashost", "shem’s", "dash",
                           "caps", "word", "vec"}


def test_zipf_ceiling_keeps_coinages_and_drops_common_english():
    text = ("wakeisland générations wakeisland générations house river morning house river morning "
            "thunderword thunderword")
    result = build_lexicon(text, min_count=2)
    assert set(result.words) == {"wakeisland", "générations", "thunderword"}
    reasons = {row.word: row.reason for row in result.rows}
    assert reasons["house"] == reasons["river"] == reasons["morning"] == "common"
    # raising the ceiling lets ordinary words in
    assert "house" in build_lexicon(text, zipf_ceiling=7.0).words


def test_min_length_min_count_and_stopwords():
    text = "bababadal bababadal shem shem onlyonce coinword coinword"
    result = build_lexicon(text, min_count=2, stopwords={"coinword"})
    reasons = {row.word: row.reason for row in result.rows}
    assert result.words == ["bababadal"]
    assert reasons == {"bababadal": "", "shem": "too_short", "onlyonce": "rare", "coinword": "stopword"}
    assert result.dropped() == {"too_short": 1, "rare": 1, "stopword": 1, "common": 0, "fragment": 0}


FRAGMENT_TEXT = (
    # the common hosts, many times each
    "where through before those night thing " * 12
    # OCR and hyphenation leftovers: each fragment twice, standalone
    + "wher e throug h befor e thos e nig ht " * 2
    # coinages that must survive, one of them near a coinage host (not English, so no host)
    + "wakeisland thunderword shemmy " * 3
    + "shemmys " * 20
)


def test_fragments_of_common_words_are_dropped():
    # loose length and Zipf filters so that only the fragment rule can drop the pieces
    result = build_lexicon(FRAGMENT_TEXT, min_length=3, zipf_ceiling=3.0, stopwords=())
    rows = {row.word: row for row in result.rows}
    for piece, host in [("wher", "where"), ("throug", "through"), ("befor", "before"),
                        ("thos", "those"), ("nig", "night")]:
        assert rows[piece].reason == "fragment", piece
        assert not rows[piece].kept
        assert repr(host) in rows[piece].note
    assert {"wakeisland", "thunderword", "shemmy", "shemmys"} <= set(result.words)
    assert not {"wher", "throug", "befor", "thos", "nig"} & set(result.words)


def test_fragment_rule_is_what_drops_them_and_can_be_switched_off():
    kept = build_lexicon(FRAGMENT_TEXT, min_length=3, zipf_ceiling=3.0, stopwords=(),
                         keep_fragments=True).words
    assert {"wher", "throug", "befor", "thos", "nig"} <= set(kept)
    # with the defaults they are out too (too short or too common), coinages in
    default = build_lexicon(FRAGMENT_TEXT).words
    assert not {"wher", "throug", "befor", "thos", "nig"} & set(default)
    assert {"wakeisland", "thunderword", "shemmy"} <= set(default)


def test_fragment_needs_a_far_more_frequent_host():
    # "throug" as often as "through": used in its own right, not a leftover
    text = "through throug " * 5
    result = build_lexicon(text, min_length=3, zipf_ceiling=3.0, stopwords=())
    assert "throug" in result.words


def test_output_order_and_determinism():
    text = clean_text(GUTENBERG) + FRAGMENT_TEXT + "chapelizod " * 30

    def csv_bytes() -> bytes:
        stream = io.StringIO()
        build_lexicon(text, min_count=1).write_csv(stream)
        return stream.getvalue().encode()

    first = csv_bytes()
    assert first == csv_bytes()
    result = build_lexicon(text, min_count=1)
    keys = [(-row.score, row.word) for row in result.rows]
    assert keys == sorted(keys)
    assert result.words[0] == "chapelizod"  # the most frequent coinage scores highest


# --------------------------------------------------------------------------- the command


# Coinages (Zipf 0) inside the book; "house" is common English; the licence text follows the end.
CLI_TEXT = GUTENBERG.replace(
    "End of the Project",
    "wakeisland générations thunderword générations thunderword house house wakeisland\n"
    "wakeisland donations donations\n\nEnd of the Project",
) + "thunderword gutenbergian gutenbergian\n"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "wake.txt"
    path.write_text(CLI_TEXT, encoding="utf-8")
    return path


def test_cli_writes_lexicon_and_scored_csv(corpus, tmp_path):
    out, scored = tmp_path / "lexicon.txt", tmp_path / "scored.csv"
    result = CliRunner().invoke(cli, ["lexicon", "build", str(corpus), "-o", str(out), "--scored",
                                      str(scored), "--min-count", "2"])
    assert result.exit_code == 0, result.output
    words = out.read_text(encoding="utf-8").splitlines()
    assert words[0] == "wakeisland"  # the most frequent coinage first
    assert set(words) == {"wakeisland", "thunderword", "générations"}
    assert "passencore" not in words  # seen once only
    assert "gutenbergian" not in words  # the licence text was stripped
    rows = list(csv.DictReader(scored.open(encoding="utf-8")))
    assert list(rows[0]) == ["word", "count", "zipf", "score", "length", "kept", "reason", "note"]
    assert {r["word"] for r in rows if r["kept"] == "yes"} == set(words)
    assert {r["reason"] for r in rows if r["kept"] == "no"} <= {"too_short", "rare", "stopword", "common",
                                                                  "fragment"}
    # the closing table: kept and dropped by reason, with counts and examples
    lines = {line.split("  ")[0].strip(): line for line in result.output.splitlines()}
    assert lines["kept"].split()[1] == "3" and "wakeisland" in lines["kept"]
    assert "dropped: rare" in lines and "passencore" in lines["dropped: rare"]
    assert "dropped: common" in lines and "candidates" in lines
    # the same input gives the same bytes
    again = tmp_path / "again.txt"
    assert CliRunner().invoke(cli, ["lexicon", "build", str(corpus), "-o", str(again),
                                    "--min-count", "2"]).exit_code == 0
    assert again.read_bytes() == out.read_bytes()


def test_cli_defaults_keep_coinages_used_once_as_the_study_did(tmp_path):
    """On a long text whose coinages mostly occur once (as the Wake's do), the defaults keep
    them all and only them: ordinary English, stop words and fragments go."""
    import random

    from wake2vec.testing import english_text

    rng = random.Random(4)
    letters = "abcdefghijklmnopqrstuvwxyz"
    coinages = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(6, 11)))
                       for _ in range(400)})
    lines = english_text(200_000, seed=4, vocabulary=6000).splitlines()  # ordinary words
    for n, word in enumerate(coinages):  # each once, at a random spot; a few twice
        lines[rng.randrange(len(lines))] += f" {word}" + (f" ({word})" if n % 10 == 0 else "")
    path = tmp_path / "book.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "lexicon.txt"
    result = CliRunner().invoke(cli, ["lexicon", "build", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    kept = set(out.read_text(encoding="utf-8").splitlines())
    from wordfreq import zipf_frequency

    unknown = {w for w in coinages if zipf_frequency(w, "en") == 0}
    assert len(unknown) > 350 and unknown <= kept  # every coinage, hapaxes included
    assert len(kept - set(coinages)) < 0.05 * len(kept)  # little else
    once = CliRunner().invoke(cli, ["lexicon", "build", str(path), "-o", str(tmp_path / "two.txt"),
                                    "--min-count", "2"])
    recurring = set((tmp_path / "two.txt").read_text(encoding="utf-8").splitlines())
    assert once.exit_code == 0 and len(recurring & unknown) < 0.2 * len(unknown)


def test_cli_refuses_to_overwrite_without_force(corpus, tmp_path):
    out, scored = tmp_path / "lexicon.txt", tmp_path / "scored.csv"
    out.write_text("precious\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["lexicon", "build", str(corpus), "-o", str(out), "--scored", str(scored)])
    assert result.exit_code == 2
    assert str(out) in result.output and "--force" in result.output
    assert out.read_text(encoding="utf-8") == "precious\n"
    assert not scored.exists()
    forced = CliRunner().invoke(cli, ["lexicon", "build", str(corpus), "-o", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "wakeisland" in out.read_text(encoding="utf-8").split()


def test_cli_missing_input_exits_2_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere.txt"
    result = CliRunner().invoke(cli, ["lexicon", "build", str(missing), "-o", str(tmp_path / "l.txt")])
    assert result.exit_code == 2
    assert str(missing) in result.output and "not found" in result.output
    assert not (tmp_path / "l.txt").exists()


def test_cli_latin1_input_names_file_and_encoding_option(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("wakeisland wakeisland\ngénérations générations\n".encode("latin-1"))
    out = tmp_path / "l.txt"
    result = CliRunner().invoke(cli, ["lexicon", "build", str(latin), "-o", str(out)])
    assert result.exit_code == 2
    assert str(latin) in result.output and "--encoding" in result.output and "line 2" in result.output
    assert not out.exists()
    ok = CliRunner().invoke(cli, ["lexicon", "build", str(latin), "-o", str(out), "--encoding", "latin-1"])
    assert ok.exit_code == 0, ok.output
    assert "générations" in out.read_text(encoding="utf-8").split()


def test_cli_stopwords_file_and_empty_result(corpus, tmp_path):
    stop = tmp_path / "stop.txt"
    stop.write_text("# my list\nWakeIsland\n", encoding="utf-8")
    out = tmp_path / "l.txt"
    result = CliRunner().invoke(cli, ["lexicon", "build", str(corpus), "-o", str(out), "--stopwords", str(stop)])
    assert result.exit_code == 0, result.output
    assert "wakeisland" not in out.read_text(encoding="utf-8").split()
    assert "thunderword" in out.read_text(encoding="utf-8").split()
    nothing = CliRunner().invoke(cli, ["lexicon", "build", str(corpus), "-o", str(tmp_path / "n.txt"),
                                       "--min-count", "1000"])
    assert nothing.exit_code == 2 and "no word passed" in nothing.output
    assert not (tmp_path / "n.txt").exists()
