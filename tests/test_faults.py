"""Faults a long run meets: SIGKILL anywhere (checkpoint writes included), a full disk, two
resumes at once, a NaN or exploding loss. Each ends with a clear answer and nothing lost.

| fault                                              | outcome                                          |
|----------------------------------------------------|--------------------------------------------------|
| SIGKILL at 21 seeded points in P1/P2/P3: mid-step,  | ``--resume`` completes; every phase's new rows,  |
| mid safetensors write, mid state.json, before the   | the P2 adapter and the final model equal an      |
| rename of a checkpoint                              | uninterrupted run's, bit for bit                 |
| a temporary folder, a final name without state.json,| never listed, never best, never resumed from;    |
| a truncated safetensors file, a cut-short state.json| the next save clears them                        |
| no space left on device at each checkpoint write    | TrainingError naming the checkpoint and "no      |
|                                                     | space left"; the previous one intact and resumed |
|                                                     | from; no temporary folder left                   |
| a second ``run --resume`` while one runs            | exit 2 naming the lock; the first completes and  |
|                                                     | equals an uninterrupted run                      |
| a NaN / inf loss, skip_nonfinite = 0               | TrainingError naming the step and the option;    |
|                                                     | the last good checkpoint kept and resumable      |
| a NaN / inf loss, skip_nonfinite = N               | the step makes no update (rows and optimiser     |
|                                                     | state unchanged), history marks it, the metrics  |
|                                                     | count it; the N+1-th stops the phase             |

(The mirror directory vanishing mid-run is covered in tests/test_mirror.py.)
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import HANG_GUARD_S, RECIPES
from helpers_inputs import plugin_site
from helpers_training import build_setup, make_ctx
from safetensors.torch import load_file
from wake2vec_plugins.phases.embed_only import EmbedOnly

from wake2vec.errors import TrainingError
from wake2vec.training import checkpoint as ckpt
from wake2vec.training import loop

pytestmark = pytest.mark.faults

# --------------------------------------------------------------------------- subprocess runs

PHASES = ("p1", "p2", "p3")
STEPS = {"p1": 6, "p2": 4, "p3": 4}
SETTINGS = [
    "--set",
    "analysis.generation.enabled=false",
    "--set",
    "analysis.metrics=[]",
    "--set",
    "report.html=false",
    "--set",
    "data.seq_len=32",
    *(
        x
        for i, p in enumerate(PHASES)
        for x in (
            "--set",
            f"phases[{i}].steps={STEPS[p]}",
            "--set",
            f"phases[{i}].eval_every=2",
            "--set",
            f"phases[{i}].eval_batches=1",
            "--set",
            f"phases[{i}].batch_size=2",
            "--set",
            f"phases[{i}].warmup_steps=1",
        )
    ),
]

# A test-only plugin, installed through a fake distribution: it stops its own process at the
# n-th event of one kind, counted from the start of a chosen phase (or a later one). Nothing in
# the product knows about it; it wraps the functions the product calls.
FAULTS = '''
"""Test plugin: SIGKILL (or pause) this process at a chosen event."""
import json, os, signal, time
from pathlib import Path

import safetensors.torch as st

import wake2vec.training.checkpoint as ckpt
import wake2vec.training.loop as loop
from wake2vec import hookimpl

KIND, PHASE, COUNT = (os.environ.get("W2V_FAULT") or "none:p9:0").split(":")
COUNT = int(COUNT)
ORDER = ["p1", "p2", "p3", "p9"]
state = {"armed": False, "seen": 0, "phase": None}


def _due(kind):
    if state["armed"] and kind == KIND:
        state["seen"] += 1
        return state["seen"] == COUNT
    return False


def _kill(detail):
    with open(os.environ["W2V_FAULT_LOG"], "a") as log:
        log.write(json.dumps({"kind": KIND, "phase": state["phase"], "detail": str(detail)}) + "\\n")
    os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def wake2vec_phase_start(run, phase):
    state["phase"] = phase.name
    if ORDER.index(phase.name) >= ORDER.index(PHASE):
        state["armed"] = True


_token_nll = loop.token_nll


def token_nll(model, batch):
    if _due("forward"):  # in the middle of a step: before its forward pass
        _kill("forward")
    if _due("pause"):  # hold the run (and its lock) until the test says go
        Path(os.environ["W2V_FAULT_LOG"] + ".paused").touch()
        while not Path(os.environ["W2V_FAULT_LOG"] + ".go").exists():
            time.sleep(0.05)
    return _token_nll(model, batch)


loop.token_nll = token_nll
_save_file = st.save_file


def save_file(tensors, filename, metadata=None):
    _save_file(tensors, filename, metadata=metadata)
    if _due("write"):  # a safetensors file cut in half, as by a crash mid-write
        with open(filename, "r+b") as handle:
            handle.truncate(os.path.getsize(filename) // 2)
        _kill(filename)


st.save_file = save_file
_write_json = ckpt._write_json


def write_json(path, value):
    if _due("json"):  # half of optimizer.json or state.json
        path.write_text(json.dumps(value)[:200])
        _kill(path)
    _write_json(path, value)
    if path.name == "state.json" and _due("renaming"):  # complete, but not yet renamed
        _kill(path)


ckpt._write_json = write_json
'''


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory) -> Path:
    return plugin_site(tmp_path_factory.mktemp("faults-site"), "wake2vec_faults", FAULTS)


def _start(out: Path, site: Path, fault: str = "", resume: bool = False) -> subprocess.Popen:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = dict(
        os.environ,
        PYTHONPATH=path,
        W2V_FAULT=fault,
        W2V_FAULT_LOG=str(out.parent / f"{out.name}.faults"),
    )
    args = [
        sys.executable,
        "-m",
        "wake2vec",
        "run",
        str(RECIPES / "three_phase.toml"),
        "--output-dir",
        str(out),
        *SETTINGS,
        *(["--resume"] if resume else []),
    ]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _run(out: Path, site: Path, fault: str = "", resume: bool = False) -> tuple[int, str]:
    proc = _start(out, site, fault, resume)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    return proc.returncode, err


def _trained(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every trainable result: each phase's new rows, the P2 adapter and the final model."""
    tensors = {}
    files = [
        *(run_dir / f"0{i + 1}-{p}" / "new_rows.safetensors" for i, p in enumerate(PHASES)),
        run_dir / "02-p2" / "adapter" / "adapter_model.safetensors",
        run_dir / "final" / "model" / "model.safetensors",
    ]
    for path in files:
        for key, value in load_file(str(path)).items():
            tensors[f"{path.relative_to(run_dir)}:{key}"] = value
    return tensors


def _assert_same_training(run_dir: Path, reference: dict[str, torch.Tensor]) -> None:
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    mine = _trained(run_dir)
    assert mine.keys() == reference.keys()
    different = [k for k in reference if not torch.equal(mine[k], reference[k])]
    assert not different, different


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fault_site) -> dict[str, torch.Tensor]:
    """One uninterrupted run, shared by the pytest-xdist workers of a session."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, which every worker shares
    out = root / "faults-reference"
    with FileLock(str(root / "faults-reference.lock")):
        if not (out / "final" / "model" / "model.safetensors").is_file():
            shutil.rmtree(out, ignore_errors=True)
            code, err = _run(out, fault_site)
            assert code == 0, err[-3000:]
    return _trained(out)


KINDS = {"forward": 4, "json": 3, "renaming": 2, "write": 6}  # kind: the largest n drawn


def _kill_plan(seed: int, chains: int, per_chain: int) -> list[list[str]]:
    """Seeded fault specs ``kind:phase:n``, each chain walking from P1 to P3 with three or more
    per phase. A spec counts from the start of its phase (or of the phase the run is in, if
    later), so it fires even after a resume; in P3, the end of the run, n is small and the
    kinds go in the order that leaves an event of the next kind to come."""
    rng = random.Random(seed)
    plans = []
    for _ in range(chains):
        phases = sorted([*PHASES * 3, *rng.choices(PHASES, k=per_chain - 9)])
        plan = []
        for phase in phases:
            kind = rng.choice(sorted(KINDS))
            last = KINDS[kind] if phase != "p3" else 2 if kind == "write" else 1
            plan.append(
                (
                    phase,
                    list(KINDS).index(kind) if phase == "p3" else 0,
                    f"{kind}:{phase}:{rng.randint(1, last)}",
                )
            )
        plans.append([spec for *_, spec in sorted(plan, key=lambda t: t[:2])])
    return plans


def _assert_only_complete_checkpoints_are_chosen(run_dir: Path) -> int:
    """Whatever the kill left, list/best/resume choose complete checkpoints; returns how many
    partial ones (temporary folders, truncated files) lay beside them."""
    partial = 0
    for root in run_dir.glob("0*-p*/checkpoints"):
        listed = ckpt.list_checkpoints(root)
        for path in listed:
            for name in ("trainable", "optimizer", "rng"):
                load_file(str(path / f"{name}.safetensors"))  # raises on a truncated file
            json.loads((path / "optimizer.json").read_text())
            json.loads((path / "state.json").read_text())
        assert ckpt.best_checkpoint(root) in [*listed, None]
        partial += sum(1 for p in root.iterdir() if p not in listed)
    return partial


def _chain(out: Path, site: Path, plan: list[str]) -> tuple[list[dict], int]:
    """Run, kill at each planned point, resume; finish with a resume that runs to the end."""
    partial = 0
    for number, fault in enumerate(plan):
        code, err = _run(out, site, fault, resume=number > 0)
        if code == 0:  # the planned event never came: the run finished
            break
        assert code == -9, f"{fault}: {err[-3000:]}"
        partial += _assert_only_complete_checkpoints_are_chosen(out)
    else:
        code, err = _run(out, site, resume=True)
        assert code == 0, err[-3000:]
    log = out.parent / f"{out.name}.faults"
    fired = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return fired, partial


def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path, fault_site, reference):
    plans = _kill_plan(seed=8, chains=2, per_chain=10)
    outs = [tmp_path / f"chain{i}" for i in range(len(plans))]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two runs at a time
        results = list(
            pool.map(
                lambda a: _chain(*a), [(o, fault_site, p) for o, p in zip(outs, plans, strict=True)]
            )
        )
    fired = [kill for kills, _ in results for kill in kills]
    assert len(fired) >= 20, fired
    by_phase = {p: sum(k["phase"] == p for k in fired) for p in PHASES}
    assert min(by_phase.values()) >= 3, by_phase
    in_writes = [k for k in fired if "/.step-" in k["detail"]]  # inside a checkpoint's temp folder
    assert len(in_writes) >= 5, fired
    assert sum(partial for _, partial in results) >= 1  # some kill did leave a partial checkpoint
    for out in outs:
        _assert_same_training(out, reference)


def test_a_second_resume_is_refused_by_the_lock_and_the_first_completes(
    tmp_path, fault_site, reference
):
    out = tmp_path / "run"
    code, err = _run(out, fault_site, "forward:p1:3")
    assert code == -9, err[-3000:]
    first = _start(out, fault_site, "pause:p2:2", resume=True)
    paused = out.parent / f"{out.name}.faults.paused"
    deadline = time.monotonic() + HANG_GUARD_S
    while not paused.exists():
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = _run(out, fault_site, resume=True)
    assert code == 2, err[-3000:]
    assert "in use by another wake2vec process" in err and "run.lock" in err
    assert "Traceback" not in err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the refused process wrote nothing
    (out.parent / f"{out.name}.faults.go").touch()
    _, err = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 0, err[-3000:]
    _assert_same_training(out, reference)


# --------------------------------------------------------------------------- in-process phases


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory):
    """A tiny injected model with its tokenizer and data, built once (each phase trains a copy)."""
    return build_setup(tmp_path_factory.mktemp("faults-setup"), tied=False)


def _phase(base, out: Path, resume: bool = False, **train):
    setup = dataclasses.replace(base, model=copy.deepcopy(base.model))
    settings = {"eval_every": 2, "eval_batches": 1, "keep_last": 10, **train}
    ctx = make_ctx(setup, out, resume=resume, **settings)
    return ctx, EmbedOnly().run(ctx)


def _rows(result) -> torch.Tensor:
    return result.model.get_input_embeddings().weight.detach().clone()


@pytest.fixture(scope="module")
def straight(setup_dir, tmp_path_factory):
    """An uninterrupted 6-step embedding-only phase."""
    _, result = _phase(setup_dir, tmp_path_factory.mktemp("straight") / "p1", steps=6)
    return result


def _copy(source: Path, target: Path, **state) -> Path:
    shutil.copytree(source, target)
    record = json.loads((target / "state.json").read_text())
    record.update(state)
    (target / "state.json").write_text(json.dumps(record))
    return target


@pytest.mark.parametrize(
    "damage",
    [
        "temporary",
        "no-state",
        "truncated-trainable",
        "truncated-rng",
        "cut-state",
        "empty-optimizer-json",
    ],
)
def test_a_partly_written_checkpoint_is_never_chosen(tmp_path, setup_dir, straight, damage):
    out = tmp_path / "p1"
    _phase(setup_dir, out, steps=4)
    root = out / "checkpoints"
    good = [p.name for p in ckpt.list_checkpoints(root)]
    assert good == ["step-0000002", "step-0000004"]
    # a later checkpoint, claiming the best validation loss, damaged as a crash would leave it
    name = ".step-0000006-x1y2" if damage == "temporary" else "step-0000006"
    bad = _copy(
        root / "step-0000004",
        root / name,
        step=6,
        val_loss=-1.0,
        progress={**ckpt.read_state(root / "step-0000004")["progress"], "step": 6},
    )
    if damage == "no-state":
        (bad / "state.json").unlink()
    elif damage.startswith("truncated"):
        target = bad / f"{damage.split('-')[1]}.safetensors"
        target.write_bytes(target.read_bytes()[: target.stat().st_size - 7])
    elif damage == "cut-state":
        (bad / "state.json").write_text((bad / "state.json").read_text()[:40])
    elif damage == "empty-optimizer-json":
        (bad / "optimizer.json").write_text("")
    assert [p.name for p in ckpt.list_checkpoints(root)] == good
    assert ckpt.best_checkpoint(root).name in good
    ctx, resumed = _phase(setup_dir, out, resume=True, steps=6)
    assert ctx.events.checkpoints[0][0] == 6  # the resumed phase saved step 6 afresh ...
    assert torch.equal(_rows(resumed), _rows(straight))  # ... having resumed from step 4
    assert [r["step"] for r in resumed.history if r["kind"] == "train"] == list(range(1, 7))
    assert not list(root.glob(".step-*"))  # the next save cleared what was left


@pytest.mark.parametrize("failing_call", [1, 2, 3, "state.json", "mkdtemp", "rename"])
def test_a_full_disk_during_a_checkpoint_is_a_clear_error_and_keeps_the_last_one(
    tmp_path, setup_dir, straight, monkeypatch, failing_call
):
    """The first checkpoint (step 2) is written; the second fails at one of its writes."""
    import safetensors.torch

    real_save, real_json = safetensors.torch.save_file, ckpt._write_json
    real_mkdtemp, real_rename = ckpt.tempfile.mkdtemp, Path.rename
    calls = {"save": 0}
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def save_file(tensors, filename, metadata=None):
        calls["save"] += 1
        if isinstance(failing_call, int) and calls["save"] == 3 + failing_call:
            Path(filename).write_bytes(b"\0" * 10)  # what fit before the disk filled up
            raise full
        return real_save(tensors, filename, metadata=metadata)

    def write_json(path, value):
        if failing_call == "state.json" and path.name == "state.json" and "0004" in str(path):
            raise full
        return real_json(path, value)

    def mkdtemp(*args, **kwargs):
        if failing_call == "mkdtemp" and "0004" in kwargs.get("prefix", ""):
            raise full
        return real_mkdtemp(*args, **kwargs)

    def rename(self, target):
        if failing_call == "rename" and Path(target).name == "step-0000004":
            raise full
        return real_rename(self, target)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    monkeypatch.setattr(ckpt, "_write_json", write_json)
    monkeypatch.setattr(ckpt.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(Path, "rename", rename)
    out = tmp_path / "p1"
    with pytest.raises(TrainingError) as failure:
        _phase(setup_dir, out, steps=6)
    message = str(failure.value)
    root = out / "checkpoints"
    assert str(root / "step-0000004") in message and "no space left" in message.lower()
    assert "step-0000002, is intact" in message
    assert sorted(p.name for p in root.iterdir()) == ["step-0000002"]  # no temporary folder
    monkeypatch.undo()
    ctx, resumed = _phase(setup_dir, out, resume=True, steps=6)  # the disk has room again
    assert ctx.events.checkpoints[0][0] == 4
    assert torch.equal(_rows(resumed), _rows(straight))


def _poison(monkeypatch, micro_batches: dict[int, float]) -> None:
    """The training loss of the given micro-batches (0-based, as the data order counts them)
    becomes the given value, NaN or inf."""
    current = {}
    order_call, real_nll = loop.BatchOrder.__call__, loop.token_nll

    def order(self, micro_batch):
        current["micro"] = micro_batch
        return order_call(self, micro_batch)

    def token_nll(model, batch):
        nll, count = real_nll(model, batch)
        if current.get("micro") in micro_batches:
            nll = nll * micro_batches[current["micro"]]
        return nll, count

    monkeypatch.setattr(loop.BatchOrder, "__call__", order)
    monkeypatch.setattr(loop, "token_nll", token_nll)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_nonfinite_loss_stops_the_phase_and_keeps_the_last_good_checkpoint(
    tmp_path, setup_dir, straight, monkeypatch, value
):
    _poison(monkeypatch, {4: value})  # step 5
    out = tmp_path / "p1"
    with pytest.raises(TrainingError) as failure:
        _phase(setup_dir, out, steps=6)
    message = str(failure.value)
    assert f"became {value} at step 5" in message and "skip_nonfinite" in message
    root = out / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-0000002", "step-0000004"]
    assert sorted(p.name for p in root.iterdir()) == ["step-0000002", "step-0000004"]
    rows = load_file(str(root / "step-0000004" / "trainable.safetensors"))["input"]
    assert torch.isfinite(rows).all()
    monkeypatch.undo()  # whatever caused it is gone: resume from the last good checkpoint
    ctx, resumed = _phase(setup_dir, out, resume=True, steps=6)
    assert ctx.events.checkpoints[0][0] == 6  # resumed from step 4
    assert torch.equal(_rows(resumed), _rows(straight))


def test_skip_nonfinite_skips_without_an_update_and_counts(tmp_path, setup_dir, monkeypatch):
    _poison(monkeypatch, {2: float("nan"), 4: float("inf")})  # steps 3 and 5
    out = tmp_path / "p1"
    ctx, result = _phase(
        setup_dir,
        out,
        steps=6,
        eval_every=1,
        skip_nonfinite=2,
        optimizer="adamw",
        weight_decay=0.01,
    )
    root = out / "checkpoints"
    tensors = {
        step: (
            load_file(str(root / ckpt.checkpoint_name(step) / "trainable.safetensors")),
            load_file(str(root / ckpt.checkpoint_name(step) / "optimizer.safetensors")),
        )
        for step in range(1, 7)
    }

    def same(a: int, b: int) -> bool:
        return all(
            torch.equal(x[k], y[k]) for x, y in zip(tensors[a], tensors[b], strict=True) for k in x
        )

    assert same(2, 3) and same(4, 5)  # skipped: neither the rows nor Adam's moments moved
    assert not same(1, 2) and not same(3, 4) and not same(5, 6)
    assert torch.isfinite(_rows(result)).all()
    train = {r["step"]: r for r in result.history if r["kind"] == "train"}
    assert [s for s, r in train.items() if r.get("skipped")] == [3, 5]
    assert train[3]["train_loss"] is None and train[3]["grad_norm"] is None
    assert train[2]["train_loss"] > 0
    assert result.metrics["skipped_batches"] == 2
    evals = {r["step"]: r for r in result.history if r["kind"] == "eval"}
    assert evals[3]["train_loss"] is None  # an evaluation window of only skipped steps
    saved = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in saved if r.get("skipped")] == [3, 5]


def test_skip_nonfinite_cap_stops_the_phase_naming_the_option(tmp_path, setup_dir, monkeypatch):
    _poison(monkeypatch, {1: float("nan"), 2: float("nan"), 3: float("nan")})
    with pytest.raises(TrainingError) as failure:
        _phase(setup_dir, tmp_path / "p1", steps=6, skip_nonfinite=2)
    message = str(failure.value)
    assert "at step 4" in message
    assert "2 steps were skipped already, the cap set by skip_nonfinite = 2" in message


def test_skip_nonfinite_under_accumulation_drops_the_whole_step(tmp_path, setup_dir, monkeypatch):
    """A bad second micro-batch: the first one's gradient must not reach the rows either."""
    _poison(monkeypatch, {3: float("nan")})  # step 2, micro-batch 2 of 2
    out = tmp_path / "p1"
    _, result = _phase(setup_dir, out, steps=3, eval_every=1, grad_accum=2, skip_nonfinite=1)
    root = out / "checkpoints"
    rows = {
        s: load_file(str(root / ckpt.checkpoint_name(s) / "trainable.safetensors"))["input"]
        for s in (1, 2, 3)
    }
    assert torch.equal(rows[1], rows[2]) and not torch.equal(rows[2], rows[3])
    assert [r["step"] for r in result.history if r.get("skipped")] == [2]
    assert result.metrics["skipped_batches"] == 1
