"""A model given as a local GGUF file (``model.name = "SmolLM2-135M-Instruct.Q4_1.gguf"``): what
it holds, read from its metadata with the ``gguf`` package, and whether transformers can load
it, dequantised to the recipe's dtype through its own GGUF support. The manifest records the
file's SHA-256 and quantisation."""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError

SUFFIX = ".gguf"
NATIVE_TYPES = frozenset({"F32", "F16"})  # read as they are; the rest is dequantised
INSTALL_HINT = "install the gguf package: pip install 'wake2vec[gguf]'"


@dataclass(frozen=True)
class GGUFFacts:
    """What a GGUF file holds, as the manifest records it."""

    path: str
    sha256: str
    architecture: str  # general.architecture, e.g. "llama"
    file_type: str  # general.file_type as llama.cpp names it, e.g. "MOSTLY_Q4_1"
    tensor_types: dict[str, int] = field(default_factory=dict)  # quantisation -> tensors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gguf_file(source: str | None) -> Path | None:
    """The GGUF file ``source`` names, or None when it names something else."""
    if not source or not source.lower().endswith(SUFFIX):
        return None
    path = Path(source).expanduser()
    return path if path.is_file() else None


def _reader(path: Path) -> Any:
    try:
        import gguf
    except ImportError:
        raise UserInputError(f"{path} is a GGUF file; to load it, {INSTALL_HINT}") from None
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError) as exc:
        raise UserInputError(f"{path}: not a readable GGUF file ({exc})") from None


def _field(reader: Any, key: str) -> Any:
    import gguf

    found = reader.fields.get(key)
    if found is None or not found.data:
        return None
    value = found.parts[found.data[0]]
    if found.types and found.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0] if hasattr(value, "tolist") else value


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[str, int, int]:
    """What identifies a file's contents cheaply: its resolved path, mtime and size. A GGUF
    file's metadata is parsed in seconds (every token of its vocabulary is an array), and a run
    asks for it several times, so what is read from it is cached by this key."""
    found = path.stat()
    return str(path.resolve()), found.st_mtime_ns, found.st_size


@functools.lru_cache(maxsize=8)
def _digest(stamp: tuple[str, int, int]) -> str:
    return sha256_of(Path(stamp[0]))


@functools.lru_cache(maxsize=8)
def _metadata(stamp: tuple[str, int, int]) -> tuple[str, str, tuple[tuple[str, int], ...]]:
    """Architecture, file type and tensor types of the GGUF file behind ``stamp``, checked."""
    import collections

    import gguf
    import gguf.quants

    path = Path(stamp[0])
    reader = _reader(path)
    architecture = _field(reader, "general.architecture")
    if not isinstance(architecture, str):
        raise UserInputError(f"{path}: the GGUF metadata has no general.architecture")
    supported = supported_architectures()
    if architecture not in supported:
        raise UserInputError(
            f"{path}: GGUF architecture {architecture!r} is not one transformers loads from GGUF "
            f"(it loads: {', '.join(sorted(supported))})")
    types = collections.Counter(t.tensor_type.name for t in reader.tensors)
    readable = NATIVE_TYPES | {t.name for t in getattr(gguf.quants, "_type_traits", {})}
    unreadable = sorted(set(types) - readable)
    if unreadable:
        raise UserInputError(
            f"{path}: tensors quantised as {', '.join(unreadable)}, which cannot be dequantised "
            f"here (readable: {', '.join(sorted(readable))}); convert the model to another "
            "quantisation with llama.cpp's tools")
    file_type = _field(reader, "general.file_type")
    try:
        file_type = gguf.LlamaFileType(int(file_type)).name if file_type is not None else "unknown"
    except ValueError:
        file_type = str(file_type)
    return architecture, file_type, tuple(sorted(types.items()))


def inspect_gguf(path: Path, *, digest: bool = True) -> GGUFFacts:
    """Read ``path``'s metadata and check that transformers can load it: its architecture is
    one transformers reads from GGUF and every tensor's type is one the ``gguf`` package
    dequantises. Anything else is a :class:`UserInputError` naming the file and what is
    supported. ``digest``: hash the file (its SHA-256, for the manifest)."""
    stamp = _stamp(path)
    architecture, file_type, types = _metadata(stamp)
    return GGUFFacts(str(path), _digest(stamp) if digest else "", architecture, file_type,
                     dict(types))


def supported_architectures() -> set[str]:
    """The GGUF architectures this transformers loads (its own list, less the non-models)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}


def gguf_config(path: Path) -> dict[str, Any]:
    """The transformers config of a GGUF file, as a dict (``model_type`` among its keys)."""
    return copy.deepcopy(_config(_stamp(path)))


@functools.lru_cache(maxsize=8)
def _config(stamp: tuple[str, int, int]) -> dict[str, Any]:
    from transformers import AutoConfig

    path = Path(stamp[0])
    try:
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: transformers cannot read its config ({exc})") from None
