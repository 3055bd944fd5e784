"""The extension contract: every hook a wake2vec plugin may implement.

A plugin is a module (or object) with functions named like the specs below and marked with
``wake2vec.hookimpl``. Built-in plugins live in ``wake2vec_plugins``; third-party packages
publish theirs through the ``wake2vec`` entry-point group. A function marked ``hookimpl``
whose name matches no spec is an error when plugins load, so a misspelling cannot pass
silently.

Registration hooks are called once per process, when the registry is first built (the first
command that needs plugins). Lifecycle hooks are called by ``wake2vec run`` as the run
progresses; their return values are ignored, and an exception raised in one fails the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from wake2vec.events import PhaseInfo, RunInfo

hookspec = pluggy.HookspecMarker("wake2vec")
hookimpl = pluggy.HookimplMarker("wake2vec")


# --------------------------------------------------------------------------- registration


@hookspec
def wake2vec_register_model_families() -> list[type]:
    """Register model families.

    Called once when the registry is built. Takes no arguments.

    Return a list of classes derived from ``wake2vec.api.ModelFamily``, each with a unique
    ``name``, a one-line docstring, a ``Params`` model, and ``model_types`` naming the
    ``config.json`` ``model_type`` values it loads.
    """


@hookspec
def wake2vec_register_injectors() -> list[type]:
    """Register tokenizer injectors.

    Called once when the registry is built. Takes no arguments.

    Return a list of classes derived from ``wake2vec.api.Injector``, each with a unique
    ``name``, a one-line docstring and a ``Params`` model.
    """


@hookspec
def wake2vec_register_initializers() -> list[type]:
    """Register embedding initialisers.

    Called once when the registry is built. Takes no arguments.

    Return a list of classes derived from ``wake2vec.api.Initializer``, each with a unique
    ``name``, a one-line docstring and a ``Params`` model.
    """


@hookspec
def wake2vec_register_phases() -> list[type]:
    """Register phase strategies.

    Called once when the registry is built. Takes no arguments.

    Return a list of classes derived from ``wake2vec.api.PhaseStrategy``, each with a unique
    ``name``, a one-line docstring and a ``Params`` model.
    """


@hookspec
def wake2vec_register_regularizers() -> list[type]:
    """Register auxiliary losses for phases that accept them.

    Called once when the registry is built. Takes no arguments.

    Return a list of classes derived from ``wake2vec.api.Regularizer``, each with a unique
    ``name``, a one-line docstring and a ``Params`` model.
    """


@hookspec
def wake2vec_register_metrics() -> list[type]:
    """Register analysis metrics.

    Called once when the registry is built. Takes no arguments.

    Return a list of classes derived from ``wake2vec.api.Metric``, each with a unique
    ``name``, a one-line docstring and a ``Params`` model.
    """


@hookspec
def wake2vec_register_commands(cli: click.Group) -> None:
    """Add commands to the ``wake2vec`` command line.

    Called once when the CLI starts, before arguments are parsed.

    ``cli``: the top-level click group; call ``cli.add_command(...)`` on it. Keep the
    command's module free of heavy imports (torch, transformers) so ``wake2vec --help`` stays
    fast; import them inside the command body.

    Return nothing.
    """


# --------------------------------------------------------------------------- lifecycle


@hookspec
def wake2vec_run_start(run: RunInfo) -> None:
    """A run is starting (or resuming).

    Called by ``wake2vec run`` after the recipe validated and the run directory was created,
    before any model loads.

    ``run``: name, directory, resolved recipe, seed and whether this is a resume.

    Return nothing.
    """


@hookspec
def wake2vec_run_end(run: RunInfo, status: str, error: str | None) -> None:
    """A run has ended.

    Called once at the end of ``wake2vec run``, whether it succeeded or not.

    ``run``: as for ``wake2vec_run_start``. ``status``: ``"completed"``, ``"failed"`` or
    ``"interrupted"``. ``error``: the error message when it failed, else ``None``.

    Return nothing.
    """


@hookspec
def wake2vec_phase_start(run: RunInfo, phase: PhaseInfo) -> None:
    """A training phase is starting.

    Called before a phase's first step (also when a resumed run re-enters it).

    ``run``: the run. ``phase``: its index, label, strategy name, directory and total steps.

    Return nothing.
    """


@hookspec
def wake2vec_phase_end(run: RunInfo, phase: PhaseInfo, metrics: dict[str, Any]) -> None:
    """A training phase has finished.

    Called after the phase's last step and final evaluation.

    ``run``, ``phase``: as for ``wake2vec_phase_start``. ``metrics``: the phase's final
    evaluation (``val_loss``, ``perplexity``, ``bits_per_byte`` and any others it reports).

    Return nothing.
    """


@hookspec
def wake2vec_evaluation(run: RunInfo, phase: PhaseInfo, step: int, metrics: dict[str, Any]) -> None:
    """An evaluation result is available.

    Called after every evaluation on the validation text during a phase.

    ``run``, ``phase``: as above. ``step``: the optimiser step just completed. ``metrics``:
    ``val_loss`` (nats per token), ``perplexity``, ``bits_per_byte`` and ``train_loss``.

    Return nothing.
    """


@hookspec
def wake2vec_checkpoint_saved(run: RunInfo, phase: PhaseInfo, step: int, path: Path) -> None:
    """A checkpoint has been written completely.

    Called after the checkpoint directory is in its final place (never for a partial write).

    ``run``, ``phase``: as above. ``step``: the step it holds. ``path``: its directory.

    Return nothing.
    """


REGISTRATION_HOOKS: dict[str, str] = {
    "model": "wake2vec_register_model_families",
    "injector": "wake2vec_register_injectors",
    "initializer": "wake2vec_register_initializers",
    "phase": "wake2vec_register_phases",
    "regularizer": "wake2vec_register_regularizers",
    "metric": "wake2vec_register_metrics",
}
