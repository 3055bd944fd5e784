"""The README's promises: the plugin example works as written, the commands it shows exist."""

from __future__ import annotations

import re
import sys

import tomllib
from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _block(language: str, marker: str) -> str:
    for match in re.finditer(rf"```{language}\n(.*?)```", README, re.S):
        if marker in match.group(1):
            return match.group(1)
    raise AssertionError(f"README has no {language} block containing {marker!r}")


def test_writing_a_plugin_example_works_as_written(fake_dists, monkeypatch):
    import torch

    project = tomllib.loads(_block("toml", "[project.entry-points.wake2vec]"))["project"]
    source = _block("python", "@hookimpl")
    (module,) = project["entry-points"]["wake2vec"].values()
    fake_dists.add(project["name"], project["version"], project["entry-points"]["wake2vec"],
                   {module: source})
    monkeypatch.delitem(sys.modules, module, raising=False)

    from wake2vec.api import InitContext
    from wake2vec.registry import get_registry

    entry = get_registry().get("initializer", "scaled-mean")
    assert entry.provenance.distribution == project["name"]
    init = get_registry().create("initializer", "scaled-mean", {"scale": 0.5})
    base = torch.randn(10, 4)
    ctx = InitContext(words=["a", "b"], ids=[10, 11], base_tokenizer=None, base_ids=list(range(10)),
                      morphology=None, generator=torch.Generator().manual_seed(0))
    rows = init.initialize(base, ctx)
    assert rows.shape == (2, 4)
    assert torch.allclose(rows[0], base.mean(0) * 0.5)


def test_readme_commands_exist(cli):
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", README, re.S))
    commands = set(re.findall(r"^wake2vec ([a-z-]+)", shell, re.M))
    assert {"run", "validate", "list-plugins"} <= commands
    for command in commands:
        assert cli(command, "--help").exit_code == 0, command


def test_readme_install_and_test_commands_match_ci():
    ci = (REPO / ".ci" / "run").read_text()
    install = re.search(r"^pip install .*$", README, re.M).group(0)
    test = re.search(r"^python -m pytest.*$", README, re.M).group(0)
    assert install in ci and test in ci
