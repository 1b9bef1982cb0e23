"""One error type for everything a user can act on, and the exit codes the CLI promises.

Commands raise :class:`StorymemError` (or a subclass); the top-level handler in
``cli/app.py`` prints ``error: <message>`` (plus a hint) to stderr and exits with
the error's code. Anything else is a bug and exits 1 with a traceback.
"""

from __future__ import annotations

# Stable exit codes: scripts and batch jobs branch on these.
EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected failure (a bug, or an environment problem we did not foresee)
EXIT_INVALID = 2  # the user's input is invalid: a script, a flag, a file


class StorymemError(Exception):
    """An error the user can understand and act on."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InvalidInputError(StorymemError):
    """Bad user input: a script, an image, a flag value, a run folder."""

    exit_code = EXIT_INVALID


class MissingWeightsError(StorymemError):
    """A weight file or model folder is not on this machine; the message says what to fetch."""

    exit_code = EXIT_FAILURE
