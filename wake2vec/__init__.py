"""wake2vec: teach a causal language model a new vocabulary and measure what that did to it.

The map: ``api`` and ``hookspecs`` are the contract plugins are written against (with
``hookimpl`` below), ``plugins`` loads them and ``registry`` looks them up by name;
``recipe`` validates a study's TOML and ``cli`` holds one module per command. ``runner`` runs a
recipe in one direction (``prepare`` loads the model and injects, then the phases, metrics and
report), with ``modeling`` and ``presets`` for loading models and ``plan`` / ``plan_recipe``
for memory estimates. ``vocab`` is the vocabulary side (study files, lexicons, morphology,
synthetic text, injection into tokenizer and model, verification); ``training`` trains the
new rows and adapters (loop, rows and head, data blocks, checkpoints, processes);
``analysis`` measures (geometry, generation probes, figures, report, trajectory,
re-analysis); ``rundir`` keeps run directories (manifest and lock, rows files, status,
comparison, archives); ``export`` hands a run to llama.cpp (a GGUF that keeps the new
words). ``testing`` holds what tests and benchmarks share. See
docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from wake2vec.hookspecs import hookimpl  # noqa: E402  (the marker plugin authors use)

__all__ = ["__version__", "hookimpl"]
