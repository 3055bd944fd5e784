"""Safety: nothing untrusted is unpickled or executed, the manifest records trust_remote_code
and the active plugins, the report escapes user strings, and offline mode gets a clear answer."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, HANG_GUARD_S, REPO, FakeDistributions
from helpers_inputs import TINY, demo_recipe, set_args

SOURCES = (REPO / "wake2vec", REPO / "plugins")
PICKLING = {"pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}
CODE_RUNNERS = {"eval", "exec", "compile", "__import__"}
DYNAMIC_IMPORTS = {"wake2vec/plugins.py", "wake2vec/cli/__init__.py"}  # names from fixed tables
PAYLOAD = "<script>alert(2)</script>"


# --------------------------------------------------------------------------- (a) static scan


def _dotted(node: ast.AST) -> str:
    """``torch.serialization.load`` for the expression naming a called function, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_code(source: str, filename: str = "<code>") -> list[str]:
    """Places in ``source`` that could unpickle or run untrusted data (comments and strings
    never count: the code is parsed, not searched)."""
    tree = ast.parse(source, filename)
    aliases = {"torch": "torch", "numpy": "numpy", "pandas": "pandas", "importlib": "importlib"}
    for node in ast.walk(tree):  # import aliases first: `import torch as t` then `t.load`
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    found = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            found += [f"{where}: imports {n}" for n in names if n.split(".")[0] in PICKLING]
            continue
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        keywords = {k.arg: k.value for k in node.keywords}
        if full in ("torch.load", "torch.serialization.load") and not _true(
            keywords.get("weights_only")
        ):
            found.append(f"{where}: {name}() without weights_only=True")
        if full == "numpy.load" and _true(keywords.get("allow_pickle")):
            found.append(f"{where}: {name}(allow_pickle=True)")
        if full.endswith("read_pickle"):
            found.append(f"{where}: {name}()")
        if name in CODE_RUNNERS:
            found.append(f"{where}: {name}()")
        if full in ("importlib.import_module", "importlib.__import__") and not any(
            filename.endswith(allowed) for allowed in DYNAMIC_IMPORTS
        ):
            found.append(f"{where}: {name}() outside the plugin and command tables")
        if _true(keywords.get("trust_remote_code")):
            found.append(f"{where}: trust_remote_code=True written in the code")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\nstate = torch.load(path)",
        "import torch\nstate = torch.load(path, weights_only=False)",
        "import torch as t\nstate = t.load(path)",
        "from torch import load\nstate = load(path)",
        "import pickle\nrows = pickle.loads(blob)",
        "import dill",
        "from joblib import load",
        "import numpy as np\nrows = np.load(path, allow_pickle=True)",
        "import pandas as pd\nframe = pd.read_pickle(path)",
        "result = eval(text)",
        "from transformers import AutoModel\nAutoModel.from_pretrained(p, trust_remote_code=True)",
        "import importlib\nimportlib.import_module(name)",
    ],
)
def test_the_scan_finds_unsafe_code(snippet):
    assert unsafe_code(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\nstate = torch.load(path, weights_only=True)",
        "# state = pickle.load(fh) in a comment\nx = 'torch.load(path)'",
        "model.eval()\nnp.load(path)",
        "load_pretrained(p, trust_remote_code=request.trust_remote_code)",
    ],
)
def test_the_scan_passes_safe_code(snippet):
    assert unsafe_code(snippet) == []


def test_no_source_file_unpickles_or_runs_untrusted_code():
    files = [p for root in SOURCES for p in sorted(root.rglob("*.py"))]
    assert len(files) > 30  # the scan saw the package, not an empty folder
    found = [
        problem
        for path in files
        for problem in unsafe_code(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert found == []


# --------------------------------------------------------------------------- one demo run


def demo_run(tmp: Path, cli, fakes: FakeDistributions, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run the demo recipe with tiny steps, a third-party plugin installed, a module on
    sys.path that is not an entry point, and a lexicon whose file name and one entry hold a
    script tag; from_pretrained calls are recorded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lexicon = tmp / "lex<script>.txt"
    lexicon.write_text(f"ancienter\nangelly\n{PAYLOAD}\n", encoding="utf-8")
    stray = "from wake2vec import hookimpl\n@hookimpl\ndef wake2vec_register_initializers():\n    return []\n"
    fakes.add(
        "wake2vec-safety-fake",
        "0.7",
        {"safety-fake": "safety_fake_plugin"},
        {"safety_fake_plugin": "# registers nothing\n", "stray_plugin": stray},
    )
    calls: list[dict] = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained

        def spy(source, *args, _original=original, _cls=cls.__name__, **kwargs):
            calls.append({"class": _cls, "source": str(source), **kwargs})
            return _original(source, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    result = cli(
        "run",
        str(demo_recipe(tmp)),
        "--output-dir",
        str(tmp / "run"),
        *set_args(
            *TINY, f"data.lexicon={lexicon}", 'analysis.metrics=["neighbours"]', "report.html=true"
        ),
    )
    assert result.exit_code == 0, result.output
    run = tmp / "run"
    return {
        "run": run,
        "calls": calls,
        "output": result.output,
        "manifest": json.loads((run / "manifest.json").read_text(encoding="utf-8")),
    }


def test_a_demo_run_is_safe(tmp_path, cli, fake_dists, monkeypatch):
    """One run (they take seconds) checked for each safety property in turn."""
    run = demo_run(tmp_path, cli, fake_dists, monkeypatch)
    check_checkpoints_and_rows_are_safetensors(run)
    check_trust_remote_code_is_off_and_recorded(run)
    check_the_manifest_lists_the_active_plugins(run)
    check_the_report_escapes_user_strings(run)


def check_checkpoints_and_rows_are_safetensors(demo_run: dict) -> None:
    files = [p for p in demo_run["run"].rglob("*") if p.is_file()]
    tensors = [p for p in files if p.suffix == ".safetensors"]
    assert any(p.parent.parent.name == "checkpoints" for p in tensors)  # checkpoints exist...
    assert {"injected_rows.safetensors", "new_rows.safetensors", "model.safetensors"} <= {
        p.name for p in tensors
    }
    pickled = [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    assert pickled == []  # ...and nothing in the run needs unpickling to be read
    from safetensors import safe_open

    for path in tensors:  # each really is safetensors (a pickle would not open)
        with safe_open(str(path), "pt") as fh:
            assert list(fh.keys())


def check_trust_remote_code_is_off_and_recorded(demo_run: dict) -> None:
    manifest = demo_run["manifest"]
    assert manifest["trust_remote_code"] is False
    assert manifest["recipe"]["model"]["trust_remote_code"] is False
    loads = demo_run["calls"]
    assert {c["class"] for c in loads} == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(c.get("trust_remote_code") is False for c in loads)


def check_the_manifest_lists_the_active_plugins(demo_run: dict) -> None:
    active = {p["plugin"]: p for p in demo_run["manifest"]["plugins"]}
    assert active["safety-fake"] == {
        "plugin": "safety-fake",
        "distribution": "wake2vec-safety-fake",
        "version": "0.7",
        "builtin": False,
    }
    builtins = {name for name, p in active.items() if p["builtin"]}
    assert {"wake2vec_plugins.models.demo", "wake2vec_plugins.phases.lora"} <= builtins
    assert all(p["distribution"] == "wake2vec" for p in active.values() if p["builtin"])
    # only entry points load: a module with hooks that is merely importable is not a plugin
    assert not any("stray" in name for name in active)
    assert set(active) == builtins | {"safety-fake"}


def check_the_report_escapes_user_strings(demo_run: dict) -> None:
    html = (demo_run["run"] / "report.html").read_text(encoding="utf-8")
    assert "lex&lt;script&gt;.txt" in html  # the file name is shown, escaped
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html  # and so is the entry
    assert "<script>alert" not in html and "lex<script>" not in html


def test_trust_remote_code_from_the_recipe_is_recorded(cli, tmp_path):
    result = cli(
        "run",
        str(demo_recipe(tmp_path)),
        "--output-dir",
        str(tmp_path / "run"),
        *set_args(*TINY, "model.trust_remote_code=true"),
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["trust_remote_code"] is True


# --------------------------------------------------------------------------- remote code


REMOTE = "open('REMOTE_CODE_RAN', 'w').write('yes')\n"
AUTO_MAP = {
    "AutoConfig": "configuration_wake.WakeConfig",
    "AutoModelForCausalLM": "modeling_wake.WakeForCausalLM",
}


def test_a_model_with_its_own_code_is_refused_without_trust(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "wakeformer", "auto_map": AUTO_MAP})
    )
    (model / "configuration_wake.py").write_text(REMOTE)
    (model / "modeling_wake.py").write_text(REMOTE)
    result = cli(
        "run",
        str(demo_recipe(tmp_path)),
        "--output-dir",
        str(tmp_path / "run"),
        *set_args(*TINY, "model.family=auto", f"model.name={model}"),
    )
    assert result.exit_code == 2
    assert f"{model / 'config.json'}: model_type 'wakeformer'" in result.output
    assert "It names its own code (auto_map): set model.trust_remote_code = true" in result.output
    assert not (tmp_path / "REMOTE_CODE_RAN").exists() and not (tmp_path / "run").exists()


def test_a_known_architecture_loads_its_builtin_code_not_the_directory_s(tmp_path, monkeypatch):
    from helpers_models import build_tiny_gpt2

    from wake2vec.modeling import load_pretrained

    monkeypatch.chdir(tmp_path)
    model = build_tiny_gpt2(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = AUTO_MAP
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_wake.py").write_text(REMOTE)
    (model / "modeling_wake.py").write_text(REMOTE)
    loaded = load_pretrained(
        str(model), family="auto", dtype="float32", quantization="none", trust_remote_code=False
    )
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    assert not (tmp_path / "REMOTE_CODE_RAN").exists()


# --------------------------------------------------------------------------- offline


HUB_RECIPE = """\
[run]
name = "offline"
[model]
{model}
[data]
corpus = "{data}/demo_corpus.txt"
lexicon = "{data}/demo_lexicon.txt"
[[phases]]
strategy = "embed-only"
steps = 1
learning_rate = 1e-3
"""


@pytest.mark.parametrize(
    "model",
    [
        'preset = "llama-3.2-1b"',
        'family = "llama"\nname = "meta-llama/Llama-3.2-1B"',
        'name = "meta-llama/Llama-3.2-1B"',
    ],
    ids=["preset", "family-and-name", "name-only"],
)
def test_offline_mode_gives_a_clear_answer_not_a_hang(tmp_path, model):
    recipe = tmp_path / "hub.toml"
    recipe.write_text(HUB_RECIPE.format(model=model, data=DATA), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), WAKE2VEC_CACHE=str(tmp_path / "cache")
    )
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wake2vec",
            "run",
            str(recipe),
            "--output-dir",
            str(tmp_path / "run"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "model 'meta-llama/Llama-3.2-1B'" in output and "HF_HUB_OFFLINE=1" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()
    assert elapsed < 45, f"took {elapsed:.0f} s"
