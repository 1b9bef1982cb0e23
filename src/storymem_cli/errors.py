"""One error type for everything a user can act on, and the exit codes the CLI promises.

Commands raise :class:`StorymemError` (or a subclass); the top-level handler in
``cli/app.py`` prints ``error: <message>`` (plus a hint) to stderr and exits with
the error's code. Anything else is a bug and exits 1 with a traceback.

The codes are a contract with scripts and batch jobs (README "Exit codes"): each class below
carries its code, so every raise site picks it up without naming a number.
"""

from __future__ import annotations

# Stable exit codes: scripts and batch jobs branch on these.
EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected failure: a bug, or an environment problem we did not foresee (a full disk)
EXIT_INVALID = 2  # the user's input is invalid: a script, a flag, a file, a damaged run folder
EXIT_UNAVAILABLE = 3  # what the command needs is not on this machine: model weights, a CUDA GPU, GPU memory
EXIT_BUSY = 4  # another storymem process is writing the run folder: wait, or use another folder
EXIT_DECLINED = 5  # the user answered no to a question: nothing was changed
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

# (code, name) for `storymem --help`; README's table says more (a test keeps the two in step).
EXIT_CODES = (
    (EXIT_OK, "success"),
    (EXIT_FAILURE, "unexpected failure"),
    (EXIT_INVALID, "invalid input"),
    (EXIT_UNAVAILABLE, "missing weights or hardware"),
    (EXIT_BUSY, "run folder busy"),
    (EXIT_DECLINED, "declined"),
    (EXIT_INTERRUPTED, "interrupted"),
)


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


class UnavailableError(StorymemError):
    """Something the command needs is not on this machine (weights, a GPU, enough GPU memory)."""

    exit_code = EXIT_UNAVAILABLE


class MissingWeightsError(UnavailableError):
    """A weight file or model folder is not on this machine; the message says what to fetch."""


class MissingHardwareError(UnavailableError):
    """The model needs hardware this machine lacks (a CUDA GPU, more GPU memory)."""


class BusyError(StorymemError):
    """Another storymem process holds what this one needs (a run folder's lock)."""

    exit_code = EXIT_BUSY


class DeclinedError(StorymemError):
    """The user answered no to a confirmation question; nothing was changed."""

    exit_code = EXIT_DECLINED
