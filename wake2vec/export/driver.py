"""The export as one call: read the run, plan and measure, then convert (see ``llama_gguf``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError
from wake2vec.export import chunks, runtime
from wake2vec.export import llama_gguf as lg
from wake2vec.export.measure import measure, table
from wake2vec.export.plan import Plan


def _read_run(run_dir: Path) -> tuple[dict[str, Any], Path]:
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise UserInputError(f"{run_dir} is not a wake2vec run directory (no manifest.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    model_dir = run_dir / "final" / "model"
    if not (model_dir / "config.json").is_file():
        raise UserInputError(f"{run_dir} has no final model yet ({model_dir}); export a completed "
                             "run (wake2vec status shows where it stands)")
    injector = ((manifest.get("recipe") or {}).get("injection") or {}).get("injector") or {}
    if injector.get("name") not in ("whole-word", "none", None):
        raise UserInputError(f"wake2vec export handles runs of the whole-word injector; this run "
                             f"used {injector.get('name')!r}")
    return manifest, model_dir


def _base_folder(model_dir: Path, base_state: dict[str, Any], folder: Path) -> None:
    """The final model's files with the base tokenizer in place of the run's."""
    runtime.copy_tree_ignoring(model_dir, folder, lg.TOKENIZER_FILES)
    (folder / "tokenizer.json").write_text(json.dumps(base_state, ensure_ascii=False),
                                           encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        settings = json.loads(config.read_text(encoding="utf-8"))
        added = settings.get("added_tokens_decoder") or {}
        settings["added_tokens_decoder"] = {k: v for k, v in added.items()
                                            if not str(v.get("content", "")).endswith(lg.MARKER)}
        (folder / "tokenizer_config.json").write_text(json.dumps(settings, ensure_ascii=False),
                                                      encoding="utf-8")


def _with_piece_rows(model_dir: Path, plan: Plan, base_state: dict[str, Any], folder: Path
                     ) -> None:
    """The final model with one more row per intermediate piece (the mean of the rows it
    joins, in the input embedding and, when untied, the output head)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto")
    rows = model.get_input_embeddings().weight.shape[0]
    total = max(rows, max(plan.pieces) + 1)
    model.resize_token_embeddings(total, mean_resizing=False)
    layers = [model.get_input_embeddings()]
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != layers[0].weight.data_ptr():
        layers.append(head)
    with torch.no_grad():
        for layer in layers:
            for i, joins in plan.pieces.items():
                layer.weight[i] = layer.weight[joins].mean(dim=0)
    model.save_pretrained(str(folder))
    _base_folder(model_dir, base_state, folder / "tokenizer-only")
    for item in (folder / "tokenizer-only").iterdir():
        if item.name in lg.TOKENIZER_FILES:
            item.replace(folder / item.name)


def _source_pre(manifest: dict[str, Any]) -> str | None:
    """A run loaded from a GGUF keeps that file's pre-tokenizer name (llama.cpp's converter
    only guesses it from the tokenizer transformers rebuilt)."""
    gguf_facts = (manifest.get("model") or {}).get("gguf") or {}
    path = gguf_facts.get("path")
    if not path or not Path(path).is_file():
        return None
    import gguf

    found = gguf.GGUFReader(path).fields.get(gguf.Keys.Tokenizer.PRE)
    return found.contents() if found is not None else None


def export_run(run_dir: Path, out: Path, outtype: str = "auto", min_coverage: float = 0.99,
               risk_limit: float = lg.RISK_LIMIT, text: Path | None = None,
               tree: Path | None = None, read_as: str = chunks.AUTO,
               progress: Callable[[str], None] = lambda _: None) -> lg.ExportResult:
    """Export ``run_dir``'s final model to ``out`` (see the module ``llama_gguf``), naming the
    llama.cpp pre-tokenizer type ``read_as`` chooses (module ``chunks``); the lines without
    lexicon words are measured against the base GGUF as the base model names it."""
    manifest, model_dir = _read_run(run_dir)
    lines = lg.default_lines(run_dir, manifest, text)
    converter = runtime.converter_tree(tree)
    if not runtime.have_llama_cpp():
        raise UserInputError(f"wake2vec export measures in llama.cpp: {runtime.INSTALL_HINT}")
    state = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    forms, base_state = lg.read_forms(state)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    rows = int((config.get("text_config") or config).get("vocab_size") or 0)
    pre = _source_pre(manifest)
    with lg.temp_beside(out) as tmp_name:
        tmp = Path(tmp_name)
        progress("converting the vocabulary with llama.cpp's converter")
        _base_folder(model_dir, base_state, tmp / "base")
        base_vocab = tmp / "base-vocab.gguf"
        runtime.convert(tmp / "base", base_vocab, "f32", converter, vocab_only=True)
        facts, reader = lg.read_facts(base_vocab)
        scores = lg.scores_from_merges(facts, base_state) or facts.scores
        if pre is not None or scores != facts.scores:
            # the source GGUF's pre-tokenizer, and SentencePiece scores that follow the
            # merges, for the base and the export
            fixed = tmp / "base-vocab-fixed.gguf"
            lg.write_edited(reader, fixed, {"tokens": facts.tokens, "types": facts.types,
                                            **({"scores": scores} if scores else {}),
                                            **({"merges": facts.merges} if facts.merges else {})},
                            pre=pre)
            base_vocab = fixed
        base_pre = facts.pre = pre or facts.pre
        planning, pre, pre_why = chunks.choose(read_as, facts, reader, base_vocab, base_pre,
                                               lines, tmp / "planning-vocab.gguf")
        progress(f"llama.cpp pre-tokenizer: {pre_why}")
        progress(f"planning {len(forms):,} word forms into llama.cpp's vocabulary")
        plan, facts, reader = lg.plan_export(planning, forms, rows, risk_limit)
        keys = lg.edited_keys(facts, plan, rows)
        edited_vocab = tmp / "edited-vocab.gguf"
        lg.write_edited(reader, edited_vocab, keys)
        progress(f"measuring on {len(lines):,} lines in llama.cpp")
        result = _measure(model_dir, edited_vocab, base_vocab, lines, plan, forms)
        forms_count = lg.counts(plan)
        report = {"run": str(run_dir), "gguf": str(out), "outtype": outtype,
                  "llama_cpp_python": runtime.LLAMA_CPP_PYTHON, "vocabulary": facts.model,
                  "pre": pre, "base_pre": base_pre, "pre_why": pre_why,
                  "min_coverage": min_coverage, "risk_limit": risk_limit, "forms": forms_count,
                  "expected_spurious_in_english": plan.risk, **result,
                  "not_exported": lg.reasons(plan),
                  "table": [("llama.cpp pre-tokenizer", pre if pre == base_pre
                             else f"{pre} (the base model's: {base_pre})"),
                            *table(result, forms_count)]}
        report_file = lg.report_path(out)
        report_file.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        if result["coverage"] < min_coverage:
            raise lg.ExportRefused(
                f"llama.cpp would produce the trained ids for {result['coverage']:.4f} of the "
                f"lexicon occurrences, below --min-coverage {min_coverage}; no GGUF written "
                f"(figures in {report_file})", report["table"])
        progress(f"converting the model ({outtype}) with llama.cpp's converter")
        full = tmp / "full"
        if plan.pieces:
            _with_piece_rows(model_dir, plan, base_state, full)
        else:
            _base_folder(model_dir, base_state, full)
        converted = tmp / "converted.gguf"
        runtime.convert(full, converted, outtype, converter)
        import gguf

        partial = lg.atomic_name(out)
        lg.write_edited(gguf.GGUFReader(str(converted)), partial, keys, pre=pre)
        partial.replace(out)
    return lg.ExportResult(table=report, gguf=out, report=report_file)


def _measure(model_dir: Path, edited: Path, base: Path, lines: list[str], plan: Plan,
             forms: list) -> dict[str, Any]:
    from tokenizers import Tokenizer
    from tqdm.auto import tqdm

    run_tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def reference(batch: list[str]) -> list[list[int]]:
        return [e.ids for e in run_tok.encode_batch(batch, add_special_tokens=False)]

    exported, base_vocab = runtime.LlamaVocab(edited), runtime.LlamaVocab(base)
    with tqdm(total=sum(1 for x in lines if x.strip()), desc="measuring", unit="line",
              leave=False) as bar:
        result = measure(lines, reference, exported.tokenize, base_vocab.tokenize, plan,
                         {f.id for f in forms}, progress=bar.update)
    exported.close()
    base_vocab.close()
    return result
