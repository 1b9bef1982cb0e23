"""The `storymem` command: one Typer app, one top-level error handler.

Each command lives in its own module under ``cli/`` and registers itself on
``app``. Command modules import torch, diffusers and the models lazily, inside
the command body, so ``--help`` and ``validate`` start fast.
"""

from __future__ import annotations

import sys

import typer
from typer import core as typer_core
from typer.core import TyperGroup

from storymem_cli import __version__
from storymem_cli.cli.helptext import document_params
from storymem_cli.errors import EXIT_CODES, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_INVALID, InvalidInputError, StorymemError
from storymem_cli.quiet import VERBOSE_ENV, set_verbose


# Typer 0.26 and later bundle their own click (typer._click); earlier releases use the click package.
UsageError = (getattr(typer_core, "_click", None) or typer_core.click).exceptions.UsageError

ARGV_KEY = "storymem.argv"  # ctx.meta: the arguments after `storymem`, as given


def print_error(err: StorymemError) -> None:
    """Print a user-facing error to stderr: the message, then the hint on its own line."""
    typer.echo(f"error: {err.message}", err=True)
    if err.hint:
        typer.echo(f"  hint: {err.hint}", err=True)


class _StorymemGroup(TyperGroup):
    """Turns our errors into a message and an exit code inside the app itself, so the
    console script and a test runner (typer.testing.CliRunner) behave the same; gives
    every command's parameters documentation-like help (cli/helptext.py)."""

    def get_command(self, ctx, cmd_name):  # type: ignore[override]
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            document_params(command.get_params(ctx))  # get_params: with its --help option
        return command

    def format_help(self, ctx, formatter):  # type: ignore[override]
        document_params(self.get_params(ctx))
        return super().format_help(ctx, formatter)

    def parse_args(self, ctx, args):  # type: ignore[override]
        # The command line as typed, for messages that must repeat it (render's resume command).
        ctx.meta[ARGV_KEY] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except StorymemError as err:
            print_error(err)
            raise typer.Exit(err.exit_code) from None
        except (OSError, ValueError, RuntimeError, EOFError) as err:
            # A pickled weight file met wherever a library loads it (issue 34): refused in our words,
            # never with torch's advice to pass weights_only=False (that would run its code).
            from storymem_cli.models.safe_load import refusal_of_library

            refused = refusal_of_library(err) if "pickle" in sys.modules else None
            if refused is None:
                raise
            print_error(refused)
            raise typer.Exit(refused.exit_code) from None
        except UsageError as err:  # an unknown option, a value out of range: ours, not Typer's box
            if type(err).__name__ == "NoArgsIsHelpError":
                raise
            where = err.ctx.command_path if err.ctx is not None else "storymem"
            what = "commands" if err.ctx is None or err.ctx.command is self else "options"
            print_error(InvalidInputError(err.format_message(), hint=f"{where} --help lists the {what}"))
            raise typer.Exit(EXIT_INVALID) from None


app = typer.Typer(
    cls=_StorymemGroup,
    name="storymem",
    help=(
        "Turn a story script (scenes, one prompt per shot, cut flags) into a multi-shot video "
        "whose characters and places stay consistent, with StoryMem: Wan2.2 video diffusion "
        "conditioned on a memory bank of keyframes from earlier shots.\n\n"
        "Results go to stdout (JSON with --json); progress and warnings to stderr. "
        "Exit codes: " + ", ".join(f"{code} {name}" for code, name in EXIT_CODES) + "."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"storymem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        envvar=VERBOSE_ENV,
        help="Let transformers, diffusers and huggingface_hub print their progress bars, logs and warnings "
        "(hidden by default so that ours is the one progress display). Before the command: storymem -v render ...",
    ),
) -> None:
    # No docstring: it would replace the app's help text.
    set_verbose(verbose)  # before any command imports those libraries
    return None


def _register_commands() -> None:
    # Imported here, after `app` exists: each command module decorates functions with
    # @app.command(). One import per command module.
    from storymem_cli.cli import validate  # noqa: F401
    from storymem_cli.cli import render  # noqa: F401
    from storymem_cli.cli import memory  # noqa: F401  inspect-memory, add-reference
    from storymem_cli.cli import eval as _eval  # noqa: F401
    from storymem_cli.cli import train  # noqa: F401
    from storymem_cli.cli import download  # noqa: F401
    from storymem_cli.cli import doctor  # noqa: F401
    from storymem_cli.cli import export  # noqa: F401
    return None


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn our errors into clean exits."""
    try:
        app(args=argv, prog_name="storymem")
    except StorymemError as err:  # raised outside a command (e.g. in a callback)
        print_error(err)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except MemoryError:
        typer.echo("error: out of memory", err=True)
        sys.exit(EXIT_FAILURE)
