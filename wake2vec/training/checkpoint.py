"""Small, atomic training checkpoints: trainable tensors, optimiser, schedule, RNG and position.

A checkpoint is a directory ``step-0000123`` holding ``trainable.safetensors`` (only the
tensors that train), ``optimizer.safetensors`` plus ``optimizer.json`` (its tensors and the
rest of its state), ``rng.safetensors`` and ``state.json`` (step, data position, scheduler and
early-stopping state). It is written under a temporary name and renamed into place, so a
directory with the final name is always complete; a directory that is not (a copy cut short, a
file truncated by a crash of the machine) is never listed, so resume never picks it. A failed
write (a full disk) raises :class:`TrainingError` and leaves the earlier checkpoints as they were.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import TrainingError

if TYPE_CHECKING:
    import torch

FORMAT = 1
_PREFIX = "step-"


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:07d}"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (keyed ``index/key[/subkey...]``) and the rest."""
    import torch

    tensors: dict[str, torch.Tensor] = {}

    def split(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
        plain = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}/{key}"] = value.detach().cpu().contiguous()  # written before the next step
            elif isinstance(value, dict):  # bitsandbytes nests its quantisation state
                plain[key] = {"__nested__": split(f"{prefix}/{key}", value)}
            else:
                plain[key] = value
        return plain

    rest = {
        "param_groups": state["param_groups"],
        "state": {
            str(index): split(str(index), values) for index, values in state["state"].items()
        },
    }
    return tensors, rest


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    def join(values: dict[str, Any]) -> dict[str, Any]:
        return {
            k: join(v["__nested__"]) if isinstance(v, dict) and "__nested__" in v else v
            for k, v in values.items()
        }

    state: dict[int, dict[str, Any]] = {int(k): join(v) for k, v in rest["state"].items()}
    for name, value in tensors.items():
        index, *path = name.split("/")
        target = state.setdefault(int(index), {})
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import numpy as np
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
    }
    return tensors, plain


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda/"))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    root: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
) -> Path:
    """Write a complete checkpoint for ``step`` under ``root`` and return its directory."""
    from safetensors.torch import save_file

    final = root / checkpoint_name(step)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    except OSError as exc:
        raise _write_error(final, exc) from exc
    try:
        save_file(
            {k: v.contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors")
        )
        opt_tensors, opt_rest = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "optimizer.json", opt_rest)
        rng_tensors, rng_plain = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        record = {
            "format": FORMAT,
            "step": step,
            "rng": rng_plain,
            "scheduler": scheduler.state_dict(),
            **state,
        }
        _write_json(tmp / "state.json", record)
        if final.exists():  # the same step saved again (a resumed run): replace it
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(final, exc) from exc
        raise
    return final


def _write_error(final: Path, exc: OSError) -> TrainingError:
    reason = exc.strerror or str(exc)
    kept = list_checkpoints(final.parent)
    before = (
        f"the last complete one, {kept[-1].name}, is intact" if kept else "none was complete before"
    )
    return TrainingError(f"cannot write checkpoint {final}: {reason}; {before}")


def _write_json(path: Path, value: Any) -> None:
    try:
        text = json.dumps(value, indent=1, allow_nan=True)
    except TypeError as exc:
        raise TrainingError(f"cannot record training state in {path.name}: {exc}") from exc
    path.write_text(text, encoding="utf-8")


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest step first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith(_PREFIX) and is_complete(path):
            try:
                found.append((int(path.name[len(_PREFIX) :]), path))
            except ValueError:
                continue
    return [p for _, p in sorted(found)]


_FILES = ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors")


def is_complete(path: Path) -> bool:
    """Whether checkpoint directory ``path`` holds every file, each safetensors file as long as
    its header says, and a state.json that parses (cheap: reads headers, not tensors)."""
    try:
        for name in _FILES:
            with (path / name).open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                header_len = int.from_bytes(handle.read(8), "little")
                if header_len <= 0 or 8 + header_len > size:
                    return False
                header = json.loads(handle.read(header_len))
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
            if 8 + header_len + max(ends, default=0) != size:
                return False
        json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
        return isinstance(read_state(path).get("step"), int)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Return ``(trainable tensors, optimiser state dict, state record)`` and restore the RNGs."""
    from safetensors.torch import load_file

    state = read_state(path)
    if state.get("format") != FORMAT:
        raise TrainingError(f"{path}: checkpoint format {state.get('format')} is not {FORMAT}")
    trainable = load_file(str(path / "trainable.safetensors"))
    optimizer = _unflatten_optimizer(
        load_file(str(path / "optimizer.safetensors")),
        json.loads((path / "optimizer.json").read_text(encoding="utf-8")),
    )
    _set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    return trainable, optimizer, state


def prune_checkpoints(root: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints and the best one (lowest val_loss);
    also clears temporary directories left by an interrupted save. Returns what was removed."""
    for leftover in root.glob(f".{_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for partial in root.glob(f"{_PREFIX}*"):  # a final name but incomplete: never resumable
        if partial.is_dir() and not is_complete(partial):
            shutil.rmtree(partial, ignore_errors=True)
    checkpoints = list_checkpoints(root)
    keep = set(checkpoints[-keep_last:])
    best = best_checkpoint(root)
    if best is not None:
        keep.add(best)
    removed = [p for p in checkpoints if p not in keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def best_checkpoint(root: Path) -> Path | None:
    """The checkpoint with the lowest recorded validation loss (the later one on a tie)."""
    best, best_loss = None, float("inf")
    for path in list_checkpoints(root):
        loss = read_state(path).get("val_loss")
        if loss is not None and loss <= best_loss:
            best, best_loss = path, loss
    return best


def save_snapshot(folder: Path, step: int, tensors: dict[str, torch.Tensor], *, keep: int = 0,
                  seed: int = 0) -> Path | None:
    """Keep the new rows of ``step`` (``snapshot_every``) for ``wake2vec trajectory``: the rows
    only (all, or the same seeded ``keep`` of them in every snapshot), safetensors, written
    atomically; phases whose trainable tensors are not rows (LoRA adapters) keep none."""
    if "input" not in tensors or "ids" not in tensors:
        return None
    import torch
    from safetensors.torch import save_file

    rows = {k: v.detach().cpu() for k, v in tensors.items() if k in ("ids", "input", "output")}
    count = rows["ids"].shape[0]
    if 0 < keep < count:
        chosen = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:keep].sort().values
        rows = {k: v[chosen] for k, v in rows.items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.safetensors"
    tmp = folder / f".{path.name}.tmp"
    save_file({k: v.contiguous() for k, v in rows.items()}, str(tmp))
    tmp.replace(path)
    return path
