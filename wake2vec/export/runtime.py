"""llama.cpp as wake2vec uses it: its own converter (``convert_hf_to_gguf.py``, taken from the
llama.cpp tree that the llama-cpp-python source distribution vendors) and its own tokenizer
(llama-cpp-python, loading a GGUF with ``vocab_only=True``).

Both are pinned to llama-cpp-python ``LLAMA_CPP_PYTHON``. The converter is fetched on first use
with ``pip download --no-deps --no-binary llama-cpp-python`` into ``~/.cache/wake2vec/llama.cpp`` (only the
converter, its ``conversion`` package and ``gguf-py`` are kept); ``WAKE2VEC_LLAMA_CPP`` or
``--llama-cpp`` names another llama.cpp tree instead. The tokenizer is the ``llama-cpp`` extra
(``pip install 'wake2vec[llama-cpp]'``, which compiles llama.cpp once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from wake2vec.errors import TrainingError, UserInputError
from wake2vec.rundir.directory import cache_root

LLAMA_CPP_PYTHON = "0.3.36"
TREE_ENV = "WAKE2VEC_LLAMA_CPP"
CONVERTER = "convert_hf_to_gguf.py"
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto")  # what the converter offers
_KEEP = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")  # members of vendor/llama.cpp kept
INSTALL_HINT = f"pip install 'wake2vec[llama-cpp]' (llama-cpp-python=={LLAMA_CPP_PYTHON})"


def pinned_tree(cache: Path | None = None) -> Path:
    """Where the pinned converter is kept: ``cache`` (default ``~/.cache/wake2vec``)."""
    return (cache or cache_root()) / "llama.cpp" / f"llama-cpp-python-{LLAMA_CPP_PYTHON}"


def converter_tree(explicit: str | Path | None = None, fetch: bool = True) -> Path:
    """The llama.cpp tree whose ``convert_hf_to_gguf.py`` converts: ``explicit``, else
    ``WAKE2VEC_LLAMA_CPP``, else the pinned tree in the cache; the pinned tree is fetched
    when it is the one named and missing."""
    named = explicit or os.environ.get(TREE_ENV)
    tree = Path(named).expanduser() if named else pinned_tree()
    if (tree / CONVERTER).is_file():
        return tree
    if named and tree.name != pinned_tree().name:
        raise UserInputError(f"{tree} holds no {CONVERTER}; name a llama.cpp source tree")
    if not fetch:
        raise UserInputError(f"llama.cpp's converter is not in {tree}")
    return fetch_converter(tree)


def fetch_converter(tree: Path) -> Path:
    """Download the pinned llama-cpp-python source distribution and keep its converter."""
    print(f"fetching llama.cpp's converter (llama-cpp-python {LLAMA_CPP_PYTHON} source) "
          f"into {tree}", file=sys.stderr)
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--no-binary", "llama-cpp-python", "-d", tmp,
                   f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or len(archives) != 1:
            raise UserInputError(
                f"could not download llama-cpp-python {LLAMA_CPP_PYTHON}'s source to get "
                f"llama.cpp's converter ({done.stderr.strip()[-400:]}); set {TREE_ENV} to a "
                f"llama.cpp checkout or pass --llama-cpp")
        staging = Path(tmp) / "tree"
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)
                       and m.name[len(prefix):].startswith(_KEEP) and (m.isfile() or m.isdir())]
            for member in members:
                member.name = member.name[len(prefix):]
            archive.extractall(staging, members=members, filter="data")
        if not (staging / CONVERTER).is_file():
            raise TrainingError(f"llama-cpp-python {LLAMA_CPP_PYTHON}'s source has no {CONVERTER}")
        try:
            staging.replace(tree)
        except OSError:
            if not (tree / CONVERTER).is_file():
                raise
    return tree


def convert(model_dir: Path, out: Path, outtype: str, tree: Path, vocab_only: bool = False) -> None:
    """Run llama.cpp's converter on a Hugging Face model directory."""
    command = [sys.executable, str(tree / CONVERTER), str(model_dir), "--outfile", str(out),
               "--outtype", outtype]
    if vocab_only:
        command.append("--vocab-only")
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise TrainingError(f"llama.cpp's converter failed on {model_dir}:\n{tail}")


def have_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class LlamaVocab:
    """A GGUF's tokenizer as llama.cpp runs it (llama-cpp-python, vocabulary only)."""

    def __init__(self, path: Path):
        try:
            import llama_cpp
        except ImportError:
            raise UserInputError(f"measuring in llama.cpp needs llama-cpp-python: {INSTALL_HINT}"
                                 ) from None
        self.path = path
        self._llm: Any = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def tokenize(self, text: str) -> list[int]:
        """``text`` as llama.cpp tokenises it: no BOS, special tokens not parsed."""
        if not text:
            return []
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if close is not None:
            close()
        self._llm = None


def copy_tree_ignoring(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    """Copy a model directory without the files in ``names`` (hard links where possible)."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in names or not item.is_file():
            continue
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)
