"""Other libraries' progress bars, log lines and warnings stay off stderr unless ``--verbose``.

transformers prints "Loading weights: 0%|..." bars for every module it loads and diffusers and
huggingface_hub log and warn freely; between our own progress lines they read as noise. The
environment variables must be set before those libraries are imported (the CLI's root callback
does it); for a library already imported (a test runner, a second command in one process) its
logging module is told directly.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

VERBOSE_ENV = "STORYMEM_VERBOSE"  # set by --verbose; child processes inherit it
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # hub downloads; transformers reads it for its loading bars too
    "HF_HUB_VERBOSITY": "error",  # "Retrying in 4s [Retry 3/5]" and the like
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
NOISY = ("transformers", "diffusers")  # libraries with their own logging module and tqdm switch
WARNING_MODULES = r"(transformers|diffusers|huggingface_hub|accelerate|peft|open_clip|timm|torchao)(\.|$)"
# Standard loggers of libraries without a verbosity switch: torch's pytree logs a deprecation for
# every Enum torchao registers, on every import of torchao (diffusers imports it when installed);
# torch.compile (inductor) imports cpp_extension, which warns "No CUDA runtime is found" on a CPU
# machine that has a CUDA toolkit installed.
QUIET_LOGGERS = ("torch.utils._pytree", "torchao", "torch.utils.cpp_extension")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
    """Record --verbose for this process and its children, and quiet the libraries unless it is on."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    quiet_libraries()


def quiet_libraries() -> None:
    """Silence third-party bars, logging and warnings (no-op with --verbose); call again after
    importing one of them to reach its already-imported switches."""
    if verbose():
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)  # a user's own setting wins
    warnings.filterwarnings("ignore", module=WARNING_MODULES)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in NOISY:
        if name in sys.modules:
            library_logging = importlib.import_module(f"{name}.utils.logging")
            library_logging.set_verbosity_error()
            library_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
