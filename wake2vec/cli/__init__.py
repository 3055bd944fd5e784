"""The wake2vec command line: a click group whose commands load lazily, plus plugin commands."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from wake2vec import __version__
from wake2vec.errors import RecipeError, Wake2vecError

# command name -> "module:attribute"; modules are imported only when the command runs or its
# help is shown, so ``wake2vec --help`` stays fast and free of torch.
COMMANDS: dict[str, str] = {
    "run": "wake2vec.cli.run:run",
    "validate": "wake2vec.cli.validate:validate",
    "list-plugins": "wake2vec.cli.list_plugins:list_plugins",
    "inject": "wake2vec.cli.inject:inject",
    "lexicon": "wake2vec.cli.lexicon:lexicon",
    "plan": "wake2vec.cli.plan:plan",
    "status": "wake2vec.cli.status:status",
    "compare": "wake2vec.cli.compare:compare",
    "analyze": "wake2vec.cli.analyze:analyze",
    "archive": "wake2vec.cli.archive:archive",
    "unpack": "wake2vec.cli.archive:unpack",
    "trajectory": "wake2vec.cli.trajectory:trajectory",
    "export": "wake2vec.cli.export:export",
}


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("WAKE2VEC_DEBUG", "") not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("traceback"))


class Wake2vecGroup(click.Group):
    """A group that imports commands on demand and turns wake2vec errors into exit codes."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._commands_from: object | None = None  # the Plugins whose commands are installed
        self._plugin_commands: set[str] = set()

    def _load_plugin_commands(self) -> None:
        from wake2vec.plugins import get_plugins

        plugins = get_plugins()
        if plugins is self._commands_from:
            return
        for name in self._plugin_commands:  # plugins were reloaded: drop the old ones' commands
            self.commands.pop(name, None)
        before = set(self.commands)
        plugins.hook.wake2vec_register_commands(cli=self)
        self._plugin_commands = set(self.commands) - before
        self._commands_from = plugins

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        self._load_plugin_commands()
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Wake2vecError as exc:
            if debug_enabled(ctx):
                raise
            prefix = "" if isinstance(exc, RecipeError) else "error: "
            click.echo(f"{prefix}{exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc}\n"
                "This is a bug in wake2vec or a plugin; rerun with --traceback for details.",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=Wake2vecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wake2vec")
@click.option(
    "--traceback",
    is_flag=True,
    help="Show the full traceback on errors (also WAKE2VEC_DEBUG=1).",
)
def cli(traceback: bool) -> None:
    """Teach a causal language model a new vocabulary and measure what that did to it.

    \b
    Quick start (offline, random-weight demo model):
      wake2vec run recipes/three_phase.toml
    Exit codes: 0 success, 2 bad input (recipe, data, usage), 1 runtime failure.
    """
    import logging

    # bitsandbytes warns on CPU that an optional kernel package (which would fetch code from a
    # hub) is missing; its fallback is fine, so keep the warning out of the user's way
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="wake2vec")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
