"""The run report of a real short demo run: every section, valid figures, user data escaped."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers_report import XSS_ENTRY, XSS_SAMPLE, XSS_WORD, fake_generation, shared_report_run
from markupsafe import escape

from wake2vec.analysis.curves import curves_figure
from wake2vec.analysis.figures import geometry_figure
from wake2vec.analysis.report import visible, write_report
from wake2vec.analysis.report_data import collect, curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("summary", "injection", "curves", "geometry", "neighbours", "generation", "recipe")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_report_run(tmp_path_factory)


@pytest.fixture(scope="module")
def page(run) -> str:
    return (run / "report.html").read_text(encoding="utf-8")


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def _image(png: bytes):
    from PIL import Image

    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every row: a truncated or corrupt file raises
    return image


def test_report_has_every_section_in_reading_order(page):
    positions = [page.index(f'<section id="{name}">') for name in SECTIONS]
    assert positions == sorted(positions)
    assert "Demo run." in page  # the demo family is flagged at the top
    assert page.index("Demo run.") < positions[0]


def test_summary_states_the_model_and_every_phase_result(run, page):
    manifest = _manifest(run)
    summary = page[page.index('<section id="summary">') : page.index('<section id="injection">')]
    assert "untied (own output rows)" in summary  # the demo model ships untied
    assert f"{manifest['injection']['new_ids']:,}" in summary
    # written once the run completed: it says so, and nothing says running
    assert manifest["status"] == "completed"
    header = page[: page.index('<section id="summary">')]
    assert '<span class="badge completed">completed</span>' in header
    assert ">running<" not in header and ">running<" not in summary
    table = summary[summary.index('id="phase-table"') :]
    for name, record in manifest["phases"].items():
        ev = record["evaluation"]
        row = table[table.index(f"<th>{name}</th>") :].split("</tr>")[0]
        for key in ("val_loss", "perplexity", "bits_per_byte"):
            assert format(ev[key], ".4g") in row, (name, key)
        assert ev["regime"] in row


def test_injection_report_lists_the_rejected_entry_escaped(page):
    section = page[page.index('<section id="injection">') : page.index('<section id="curves">')]
    assert "coverage" in section and "dead words" in section and "round trip exact" in section
    assert str(escape(XSS_ENTRY)) in section
    assert "contains whitespace" in section  # the loader's reason is shown beside it


def test_user_strings_are_escaped_and_never_raw(page):
    for hostile in (XSS_ENTRY, XSS_WORD, XSS_SAMPLE):
        assert hostile not in page
    assert str(escape(XSS_SAMPLE)) in page
    assert str(escape(XSS_WORD)) in page
    assert "<script" not in page.lower()  # the page runs no script at all
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) == 7 and all(  # curves, and a geometry and a study figure per phase
        i.startswith('<img src="data:image/png;base64,') for i in images
    )


def test_page_is_self_contained(page):
    assert "Content-Security-Policy" in page
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#)', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_figures_are_valid_pngs_written_beside_the_data_and_embedded(run, page):
    files = [run / "curves.png", *sorted(run.glob("[0-9][0-9]-*/geometry.png")),
             *sorted(run.glob("[0-9][0-9]-*/study.png"))]
    assert len(files) == 7  # the curves, and a geometry and a study figure per phase
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 7
    decoded = {base64.b64decode(b) for b in embedded}
    for path in files:
        png = path.read_bytes()
        assert png in decoded, path
        image = _image(png)
        assert image.width >= 1000 and image.height >= 400


def test_geometry_tables_show_numbers_not_json(run, page):
    metrics = json.loads((run / "01-p1" / "metrics.json").read_text(encoding="utf-8"))
    geometry = page[page.index('<section id="geometry">') : page.index('<section id="neighbours">')]
    for caption in (
        "Row norms",
        "Isotropy",
        "Drift",
        "Neighbours",
        "PCA dimensions",
        "Pairwise cosines",
        "PIP loss",
    ):
        assert geometry.count(f"<caption>{caption}</caption>") == 3, caption
    iso = metrics["analysis"]["isotropy"]["after"]["new"]["isoscore"]
    assert format(iso, ".4g") in geometry
    assert '"isoscore"' not in geometry  # no JSON dump of the metrics


def test_neighbour_table_shows_token_strings(run, page):
    metrics = json.loads((run / "03-p3" / "metrics.json").read_text(encoding="utf-8"))
    example = metrics["analysis"]["neighbours"]["examples"][0]
    section = page[
        page.index('<section id="neighbours">') : page.index('<section id="generation">')
    ]
    assert str(escape(visible(example["word"]))) in section
    assert "after p3" in section
    assert str(escape(visible(example["after"][0]["token"]))) in section


def test_generation_samples_last_phase_first_with_measures(run, page):
    section = page[page.index('<section id="generation">') : page.index('<section id="recipe">')]
    assert section.index("After phase p3") < section.index("After phase p1")
    assert "<details open>" in section.split("After phase p3")[0]  # the last phase is open
    assert "<b>riverrun, past Eve and Adam&#39;s,</b>" in section
    assert "Measures by temperature" in section
    for t in ("0.5", "1.2", "mean"):
        assert f"<th>{t}</th>" in section
    assert "new token share" in section and '<td class="num">0.25</td>' in section


def test_report_json_holds_what_the_page_shows(run):
    data = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert [p["name"] for p in data["phases"]] == ["p1", "p2", "p3"]
    assert data["phases"][-1]["generation"]["groups"][0]["samples"][0]["text"].startswith(
        XSS_SAMPLE
    )
    assert [c["offset"] for c in data["curves"]] == [0, 4, 6]  # 4 + 2 + 2 steps in a row
    assert data["neighbours"]["rows"] and data["neighbours"]["columns"][-1] == "after p3"
    assert {t["title"] for t in data["phases"][0]["tables"]} >= {"Row norms", "PIP loss"}


def test_metric_histograms_count_every_row(run):
    analysis = json.loads((run / "01-p1" / "metrics.json").read_text("utf-8"))["analysis"]
    norms = analysis["norms"]
    for key in ("before", "after"):
        for which in ("base", "new"):
            assert sum(norms["histogram"][key][which]) == norms[key][which]["n"]
    assert len(norms["histogram"]["bin_edges"]) == len(norms["histogram"]["after"]["new"]) + 1
    drift = analysis["drift"]["new"]
    assert sum(drift["histogram"]["counts"]) == drift["rows"]
    assert drift["histogram"]["bin_edges"][-1] == 1.0
    nearest = analysis["neighbours"]["nearest_cosine"]
    assert sum(nearest["after"]["counts"]) == analysis["neighbours"]["queries"]


def test_report_without_generation_or_some_metrics_still_renders(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "final", "cache"))
    for path in copy.glob("[0-9][0-9]-*/metrics.json"):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        metrics.pop("generation", None)
        for key in ("neighbours", "pca-dims", "drift"):
            metrics["analysis"].pop(key)
        path.write_text(json.dumps(metrics), encoding="utf-8")
    page = write_report(copy, _manifest(copy), "a <title>").read_text(encoding="utf-8")
    assert '<section id="generation">' not in page
    assert "Not measured (add the <code>neighbours</code> metric" in page
    assert "<title>a &lt;title&gt;</title>" in page
    assert "<caption>PCA dimensions</caption>" not in page


def test_geometry_figure_with_missing_or_malformed_metrics(run, caplog):
    analysis = json.loads((run / "01-p1" / "metrics.json").read_text("utf-8"))["analysis"]
    full = geometry_figure(analysis)
    assert full == geometry_figure(analysis)  # deterministic bytes
    partial = geometry_figure({"norms": analysis["norms"]})
    assert _image(partial).size == _image(full).size and partial != full
    broken = geometry_figure({**analysis, "isotropy": {"before": 3}})
    _image(broken)
    assert "cannot draw isotropy" in caplog.text
    _image(geometry_figure(None))


def test_curves_line_phases_up_and_drop_resumed_duplicates(tmp_path):
    rows = {
        "01-a": [(1, 5.0), (2, 4.0), (1, 5.5), (2, 4.5), (3, 4.2)],  # resumed after step 2
        "02-b": [(1, 4.0), (2, 3.5)],
    }
    phases = []
    for folder, steps in rows.items():
        (tmp_path / folder).mkdir()
        lines = [json.dumps({"step": s, "kind": "train", "train_loss": v}) for s, v in steps]
        lines.append(
            json.dumps(
                {"step": steps[-1][0], "kind": "eval", "val_loss": 4.0, "bits_per_byte": 1.5}
            )
        )
        (tmp_path / folder / "history.jsonl").write_text("\n".join(lines) + "\n{half", "utf-8")
        phases.append({"name": folder[3:], "folder": tmp_path / folder, "record": {}})
    series = curves(phases)
    assert series[0]["train"] == {"step": [1, 2, 3], "train_loss": [5.5, 4.5, 4.2]}
    assert [s["offset"] for s in series] == [0, 3]
    _image(curves_figure(series, uniform_loss=6.0))
    _image(curves_figure([]))


def test_collect_reads_a_run_with_no_phase_folders(tmp_path):
    manifest = {"status": "running", "phases": {"p1": {"status": "running"}}}
    data = collect(tmp_path, manifest)
    assert data["phases"][0]["folder"] is None and data["neighbours"]["rows"] == []
    page = write_report(tmp_path, manifest).read_text(encoding="utf-8")
    assert "No injection report" in page


def test_fake_generation_shape_matches_the_probe_measures():
    from wake2vec.analysis.generation import MEASURES

    gen = fake_generation("x")
    assert set(gen["mean"]) == set(MEASURES)
