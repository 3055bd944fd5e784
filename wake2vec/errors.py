"""Exceptions raised by wake2vec; only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class Wake2vecError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this escapes a command."""

    exit_code = 1


class UserInputError(Wake2vecError):
    """Bad input from the user: a recipe, a data file, a command-line value. Exit 2."""

    exit_code = 2


class RecipeError(UserInputError):
    """A recipe that does not validate. Carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        n = len(problems)
        lines = [f"{source} is not valid ({n} error{'s' if n != 1 else ''}):"]
        lines += [f"  {path}: {message}" if path else f"  {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class DataError(UserInputError):
    """A data file (corpus, lexicon, morphology) that cannot be used as given."""


class PluginError(Wake2vecError):
    """A plugin that cannot be loaded or is inconsistent with the others (duplicate names)."""


class UnknownNameError(UserInputError):
    """A plugin name that is not registered for its kind."""

    def __init__(self, kind: str, name: str, available: list[str], failed: list[str] | None = None):
        import difflib

        self.kind, self.name, self.available = kind, name, sorted(available)
        close = difflib.get_close_matches(name, self.available, n=3, cutoff=0.6)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" (available: {', '.join(self.available) or 'none'})"
        if failed:
            msg += f"; plugins that failed to load: {', '.join(failed)}"
        super().__init__(msg)


class RunDirError(UserInputError):
    """A run directory that exists, is locked, or cannot be written."""


class TrainingError(Wake2vecError):
    """A failure during training: non-finite loss, a checkpoint that does not reload."""
