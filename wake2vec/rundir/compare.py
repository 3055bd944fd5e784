"""Runs side by side without torch: what each measured, with the tokenizer it measured with
(per-token losses compare only between runs of one tokenizer; bits per byte across all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wake2vec.rundir.directory import MANIFEST
from wake2vec.rundir.reading import dig, read_json, read_jsonl, require_run_dir
from wake2vec.rundir.status import EVENTS, phase_dirs, planned_phases

GEOMETRY = (
    ("isotropy mu (new rows)", ("isotropy", "after", "new", "mu")),
    ("IsoScore (new rows)", ("isotropy", "after", "new", "isoscore")),
    ("norm Cohen's d (new vs base)", ("norms", "after", "cohens_d")),
    ("drift: mean cosine to before (new rows)", ("drift", "new", "mean")),
    ("neighbour overlap before/after", ("neighbours", "overlap")),
    ("PIP loss, relative (new rows)", ("pip-loss", "new", "relative")),
    ("PCA dims for 90% (new rows)", ("pca-dims", "after", "new", "dims", "0.9")),
)


# label, key in a phase's generation "mean", per token (so tied to the tokenizer)
GENERATION = (
    ("generated: new-token share", "new_token_share", True),
    ("generated: words unknown to English", "unknown_word_share", False),
    ("generated: lexicon-word share", "lexicon_share", False),
    ("generated: lexicon recall", "lexicon_recall", False),
    ("generated: distinct-2", "distinct_2", False),
    ("generated: repeated trigrams", "repetition_rate", False),
)


INJECTION = (
    ("words added", ("added", "count")),
    ("new ids", ("added", "ids")),
    ("trainable rows", ("added", "trainable_rows")),
    ("words skipped", ("skipped", "count")),
    ("coverage of lexicon occurrences", ("coverage",)),
    ("spurious hits", ("spurious_hits", "count")),
    ("dead words", ("dead_tokens", "count")),
    ("dead word share", ("dead_tokens", "share")),
    ("round trip exact", ("round_trip", "exact")),
    ("tokens after / before", ("token_ratio",)),
)


NOT_COMPARABLE = (
    "not comparable across these runs: their tokenizers differ, so a token is not "
    "the same unit; compare bits per byte"
)


def tokenizer_fingerprint(run_dir: Path, manifest: dict[str, Any]) -> str:
    """A short hash identifying the tokenizer a run's losses were measured with: the saved
    (injected) ``tokenizer/`` files, else the base model plus the number of new ids."""
    import hashlib

    sha = hashlib.sha256()
    folder = run_dir / "tokenizer"
    files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    preferred = [p for p in files if p.name == "tokenizer.json"] or files
    if preferred:
        for path in preferred:
            sha.update(path.name.encode() + b"\0" + path.read_bytes())
    else:
        model = manifest.get("model") or {}
        facts = [
            model.get("family"),
            model.get("source"),
            model.get("tokenizer_entries"),
            dig(manifest, "injection", "new_ids"),
        ]
        sha.update(json.dumps(facts, default=str).encode())
    return sha.hexdigest()[:12]


def run_summary(run_dir: Path) -> dict[str, Any]:
    """The facts ``wake2vec compare`` puts side by side for one run."""
    run_dir = require_run_dir(Path(run_dir))
    manifest = read_json(run_dir / MANIFEST) or {}
    injection = read_json(run_dir / "injection.json") or {}
    model = manifest.get("model") or {}
    base_entries = model.get("tokenizer_entries")
    new_ids = dig(manifest, "injection", "new_ids")
    if new_ids is None:
        new_ids = dig(injection, "embedding", "new_ids")
    after = dig(injection, "embedding", "tokenizer_entries_after")
    if after is None and isinstance(base_entries, int) and isinstance(new_ids, int):
        after = base_entries + new_ids
    folders = phase_dirs(run_dir)
    phases = {}
    for plan in planned_phases(manifest, read_jsonl(run_dir / EVENTS), folders):
        name = plan["name"]
        record = dig(manifest, "phases", name) or {}
        metrics = read_json(folders[name] / "metrics.json", attempts=1) if name in folders else None
        evaluation = record.get("evaluation") or dig(metrics, "evaluation") or {}
        phases[name] = {
            "status": record.get("status", "pending"),
            "val_loss": evaluation.get("val_loss"),
            "perplexity": evaluation.get("perplexity"),
            "bits_per_byte": evaluation.get("bits_per_byte"),
            "uniform_loss": evaluation.get("uniform_loss"),
            "geometry": {label: dig(metrics, "analysis", *path) for label, path in GEOMETRY},
            "generation": {key: dig(metrics, "generation", "mean", key) for _, key, _ in GENERATION},
        }
    return {
        "run_dir": str(run_dir),
        "name": dig(manifest, "recipe", "run", "name") or run_dir.name,
        "status": manifest.get("status"),
        "family": model.get("family"),
        "source": model.get("source"),
        "tied": model.get("tied"),
        "base_tokenizer_entries": base_entries,
        "tokenizer_entries": after,
        "new_ids": new_ids,
        "new_share": new_ids / after if isinstance(new_ids, int) and after else None,
        "tokenizer_fingerprint": tokenizer_fingerprint(run_dir, manifest),
        "tokenizer_kind": tokenizer_kind(run_dir),
        "phases": phases,
        "injection": {label: dig(injection, *path) for label, path in INJECTION},
        "baselines": manifest.get("baselines") or {},
    }


def tokenizer_kind(run_dir: Path) -> str | None:
    """"byte-level BPE", "SentencePiece-style BPE" and the like, read from the run's saved
    fast tokenizer (tokenizer/tokenizer.json); None when there is none."""
    data = read_json(run_dir / "tokenizer" / "tokenizer.json", attempts=1)
    if not isinstance(data, dict):
        return None
    text = json.dumps([data.get(k) for k in ("normalizer", "pre_tokenizer", "decoder")])
    model = dig(data, "model", "type") or "unknown model"
    if '"ByteLevel"' in text:
        return f"byte-level {model}"
    if '"Metaspace"' in text or "\u2581" in text or "▁" in text:
        return f"SentencePiece-style {model}"
    return str(model)


def compare_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """Runs side by side: ``rows`` of ``{section, label, values (one per run), comparable,
    note}``; per-token numbers are marked not comparable when the tokenizers differ."""
    runs = [run_summary(Path(p)) for p in run_dirs]
    labels = [r["name"] for r in runs]
    if len(set(labels)) < len(labels):  # same run name twice: tell them apart by folder
        labels = [f"{r['name']} ({Path(r['run_dir']).name})" for r in runs]
    same_tokenizer = len({r["tokenizer_fingerprint"] for r in runs}) <= 1
    rows: list[dict[str, Any]] = []

    def add(section: str, label: str, values: list[Any], per_token: bool = False) -> None:
        if all(v is None for v in values):
            return
        comparable = same_tokenizer or not per_token
        rows.append(
            {
                "section": section,
                "label": label,
                "values": values,
                "comparable": comparable,
                "note": None if comparable else NOT_COMPARABLE,
            }
        )

    add("run", "status", [r["status"] for r in runs])
    add("run", "folder", [r["run_dir"] for r in runs])
    for key, label in (
        ("family", "model family"),
        ("source", "model source"),
        ("tied", "tied head"),
        ("base_tokenizer_entries", "base tokenizer entries"),
        ("tokenizer_entries", "tokenizer entries after injection"),
        ("new_ids", "new ids"),
        ("new_share", "new ids' share of the vocabulary"),
        ("tokenizer_fingerprint", "tokenizer fingerprint"),
        ("tokenizer_kind", "tokenizer kind"),
    ):
        add("model", label, [r[key] for r in runs])
    for key, label in (("base", "untouched model"), ("injected", "injected, step 0")):
        add("baselines", f"{label}: bits per byte",
            [dig(r["baselines"], key, "bits_per_byte") for r in runs])
        add("baselines", f"{label}: val loss",
            [dig(r["baselines"], key, "val_loss") for r in runs], per_token=True)
    for label, _ in INJECTION:
        add("injection", label, [r["injection"][label] for r in runs])
    names: list[str] = []
    for run in runs:
        names += [n for n in run["phases"] if n not in names]
    for name in names:
        section = f"phase {name}"
        phase = [r["phases"].get(name) or {} for r in runs]
        add(section, "status", [p.get("status") for p in phase])
        add(section, "val loss (nats/token)", [p.get("val_loss") for p in phase], per_token=True)
        add(section, "perplexity (per token)", [p.get("perplexity") for p in phase], per_token=True)
        add(
            section,
            "uniform-guess loss ln|V|",
            [p.get("uniform_loss") for p in phase],
            per_token=True,
        )
        add(section, "bits per byte", [p.get("bits_per_byte") for p in phase])
        for label, _ in GEOMETRY:
            add(section, label, [dig(p, "geometry", label) for p in phase])
        for label, key, per_token in GENERATION:
            add(section, label, [dig(p, "generation", key) for p in phase], per_token=per_token)
    return {"runs": runs, "labels": labels, "same_tokenizer": same_tokenizer, "rows": rows}


# (label, path into metrics.json "analysis"): headline geometry numbers, after the phase
