"""The run report: one self-contained HTML page (jinja2, autoescaped) and a JSON twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wake2vec.rundir import write_json_atomic

DEMO_NOTE = (
    "This run used the built-in demo model: random weights and a tokenizer trained on the demo "
    "corpus. It exists to exercise the pipeline; its losses and samples say nothing about "
    "language. Real runs name a hub model and the researcher's own text."
)


def collect(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything the report shows, read from the run directory."""
    phases = []
    for name, record in manifest.get("phases", {}).items():
        folder = next(iter(sorted(run_dir.glob(f"[0-9][0-9]-{name}"))), None)
        metrics = {}
        if folder is not None and (folder / "metrics.json").is_file():
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        phases.append({"name": name, "record": record, "metrics": metrics})
    injection = {}
    if (run_dir / "injection.json").is_file():
        injection = json.loads((run_dir / "injection.json").read_text(encoding="utf-8"))
    return {"manifest": manifest, "phases": phases, "injection": injection}


def write_report(run_dir: Path, manifest: dict[str, Any], title: str | None = None) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    data = collect(run_dir, manifest)
    write_json_atomic(run_dir / "report.json", data)
    env = Environment(loader=PackageLoader("wake2vec", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    family = manifest.get("model", {}).get("family")
    html = env.get_template("report.html").render(
        title=title or f"wake2vec run {manifest.get('recipe', {}).get('run', {}).get('name', '')}",
        demo_note=DEMO_NOTE if family == "demo" else None, **data)
    path = run_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
