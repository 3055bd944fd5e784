"""Lexicon and morphology loaders: what they keep, what they reject, and errors that name the
file and line."""

from __future__ import annotations

import json

import pytest

from wake2vec.errors import DataError
from wake2vec.vocab.lexicon import load_lexicon
from wake2vec.vocab.morphology import Morphology, load_morphology, segment


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------- lexicon


def test_lexicon_keeps_file_order_and_explains_rejections(tmp_path):
    decomposed = (
        "ge\u0301ne\u0301rations"  # NFD: must be stored as NFC and dedupe with the NFC line
    )
    path = write(
        tmp_path / "lex.txt",
        "\n".join(
            [
                "# a comment",
                "  riverrun  ",
                "",
                "générations",
                decomposed,
                "two words",
                "bad\x07bell",
                "x" * 101,
                "riverrun",
                "earwicker's",
            ]
        )
        + "\n",
    )
    lex = load_lexicon(path)
    assert lex.words == ["riverrun", "générations", "earwicker's"]
    assert lex.duplicates == 2
    assert [(line, reason.split(" (")[0]) for line, _, reason in lex.rejected] == [
        (6, "contains whitespace"),
        (7, "contains a control or format character"),
        (8, "longer than 100 characters"),
    ]
    assert lex.rejected[0][1] == "two words"


def test_lexicon_invalid_encoding_names_file_and_line(tmp_path):
    path = tmp_path / "lex.txt"
    path.write_bytes(b"riverrun\nshore\nbad \xff word\n")
    with pytest.raises(DataError) as err:
        load_lexicon(path)
    assert f"{path}:3" in str(err.value) and "utf-8" in str(err.value)


def test_lexicon_other_encoding_reads(tmp_path):
    path = write(tmp_path / "lex.txt", "fête\nnaïve\n", encoding="latin-1")
    assert load_lexicon(path, encoding="latin-1").words == ["fête", "naïve"]


def test_lexicon_without_words_is_an_error(tmp_path):
    path = write(tmp_path / "lex.txt", "# only comments\n\n   \nbad word\n")
    with pytest.raises(DataError, match="no usable words") as err:
        load_lexicon(path)
    assert str(path) in str(err.value) and "line 4" in str(err.value)


def test_lexicon_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_lexicon(tmp_path / "absent.txt")


# --------------------------------------------------------------------------- morphology


CSV = """type,morpheme,example1,example2,example3
prefix,un,undo,unmade
prefix,unre,unrest
suffix,ing,bringing,going
suffix,s,rivers
suffix,ation,nation,generation
"""


def test_morphology_csv_groups_and_devices(tmp_path):
    csv_path = write(tmp_path / "m.csv", CSV)
    groups = write(
        tmp_path / "g.jsonl",
        json.dumps(
            {"morpheme": "tri", "type": "prefix", "examples": ["tricarême"], "bases": ["carême"]}
        )
        + "\n\n",
    )
    devices = write(
        tmp_path / "d.jsonl",
        "\n".join(
            json.dumps(d)
            for d in [
                {"device": "portmanteau", "examples": ["riverrun", "brinabride"]},
                {"device": "foreign", "examples": ["ténèbres"]},
            ]
        ),
    )
    m = load_morphology(csv_path, groups, devices)
    assert m.prefixes["un"] == ["undo", "unmade"] and m.suffixes["ing"] == ["bringing", "going"]
    assert m.prefixes["tri"] == ["tricarême"]  # group morphemes join the tables
    assert m.groups[0].bases == ["carême"] and m.groups[0].type == "prefix"
    assert m.devices == {"portmanteau": ["riverrun", "brinabride"], "foreign": ["ténèbres"]}


@pytest.mark.parametrize(
    "row, message",
    [
        ("prefix\n", "line 2: column 2 (morpheme) is missing"),
        ("infix,xx,a\n", "line 2: column 1 (type): unknown type 'infix'"),
        ("suffix, ,a\n", "line 2: column 2 (morpheme) is empty"),
    ],
)
def test_morphology_csv_errors_name_file_line_and_column(tmp_path, row, message):
    path = write(tmp_path / "m.csv", "prefix,un,undo\n" + row)
    with pytest.raises(DataError) as err:
        load_morphology(path)
    assert str(err.value).startswith(f"{path}:2: ") and message.split(": ", 1)[1] in str(err.value)


def test_morphology_broken_jsonl_line_names_file_and_line(tmp_path):
    csv_path = write(tmp_path / "m.csv", CSV)
    devices = write(
        tmp_path / "d.jsonl", '{"device": "pun", "examples": ["x"]}\n{"device": "nonce", \n'
    )
    with pytest.raises(DataError) as err:
        load_morphology(csv_path, devices_path=devices)
    assert f"{devices}:2:" in str(err.value)
    groups = write(tmp_path / "g.jsonl", '{"morpheme": "un", "type": "midfix"}\n')
    with pytest.raises(DataError, match=r"g\.jsonl:1: key 'type'"):
        load_morphology(csv_path, groups_path=groups)


def test_segment_greedy_longest_with_min_root():
    m = Morphology(
        prefixes={"un": [], "unre": [], "re": []}, suffixes={"ing": [], "s": [], "ings": []}
    )
    assert segment("unrewardings", m) == ("unre", "ward", "ings")
    assert segment("undo", m) == ("", "undo", "")  # "un" would leave a 2-letter root
    assert segment("rings", m) == ("", "ring", "s")  # "ings" would leave "r"
    assert segment("Rerunning", m) == ("Re", "runn", "ing")  # case-insensitive, spelling kept
    assert segment("unrewardings", m, blocklist=["unre", "ings"]) == ("un", "rewarding", "s")
