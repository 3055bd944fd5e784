"""A short real demo run whose report holds hostile strings, for the report tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import HANG_GUARD_S, built_once

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"
# The loader refuses a lexicon with an entry holding spaces, so this one reaches the report as a
# word the injector rejected (written into injection.json after the run) ...
XSS_ENTRY = "<img src=x onerror=alert(1)>"
# ... and this space-free form of it is a real lexicon word: added, never in the text (dead).
XSS_WORD = "<img/src/onerror=alert(2)>"
XSS_SAMPLE = '<script>alert("sample")</script>'
SHORT = (
    *("--set", "phases[0].steps=4", "--set", "phases[1].steps=2", "--set", "phases[2].steps=2"),
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
    *("--set", "analysis.generation.temperatures=[0.7]"),
    *("--set", "analysis.generation.max_new_tokens=6"),
)


def fake_generation(text: str, temperatures: tuple[float, ...] = (0.5, 1.2)) -> dict[str, Any]:
    """A generation-probe result in the shape metrics.json stores (one sample per temperature)."""
    prompt = "riverrun, past Eve and Adam's,"
    measures = {
        "new_token_share": 0.25,
        "unknown_word_share": 0.5,
        "lexicon_share": 0.125,
        "lexicon_recall": 0.01,
        "distinct_1": 0.9,
        "distinct_2": 1.0,
        "repetition_rate": 0.0,
    }
    samples = [
        {
            "prompt": prompt,
            "temperature": t,
            "sample": 0,
            "text": f"{text} at {t}",
            "tokens": 12,
            "measures": measures,
        }
        for t in temperatures
    ]
    return {
        "settings": {
            "prompts": [prompt],
            "temperatures": list(temperatures),
            "max_new_tokens": 12,
            "samples_per_setting": 1,
            "seed": 7,
        },
        "samples": samples,
        "by_temperature": {f"{t:g}": measures for t in temperatures},
        "mean": measures,
    }


def make_report_run(root: Path) -> Path:
    """A finished three-phase demo run (a few steps per phase) under ``root`` with hostile
    strings: XSS_WORD in its lexicon, XSS_ENTRY among the injector's rejected words and a fake
    generation sample holding a ``<script>`` in its last phase; its report rewritten with them.
    Returns the run directory."""
    lexicon = root / "lexicon.txt"
    words = (REPO / "data" / "demo_lexicon.txt").read_text(encoding="utf-8")
    # the word first: the first new id, so the first dead token in the injection report's sample
    lexicon.write_text(f"{XSS_WORD}\n{words.rstrip()}\n", encoding="utf-8")
    run = root / "run"
    cmd = [
        sys.executable,
        "-m",
        "wake2vec",
        "run",
        str(RECIPE),
        "--output-dir",
        str(run),
        "--set",
        f"data.lexicon={json.dumps(str(lexicon))}",
        *SHORT,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = sorted(run.glob("[0-9][0-9]-*"))[-1] / "metrics.json"
    metrics = json.loads(last.read_text(encoding="utf-8"))
    metrics["generation"] = fake_generation(XSS_SAMPLE)
    last.write_text(json.dumps(metrics), encoding="utf-8")
    injection = json.loads((run / "injection.json").read_text(encoding="utf-8"))
    injection["rejected"]["items"].append([XSS_ENTRY, "contains whitespace (U+0020 SPACE)"])
    injection["rejected"]["count"] += 1
    (run / "injection.json").write_text(json.dumps(injection), encoding="utf-8")
    from wake2vec.analysis.report import write_report

    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    write_report(run, manifest)
    return run


def shared_report_run(tmp_path_factory) -> Path:
    """``make_report_run``'s run, built once per test session and shared by the xdist workers
    and by the modules that read it (tests that change a run work on a copy)."""
    return built_once(tmp_path_factory, "report-run", make_report_run) / "run"
