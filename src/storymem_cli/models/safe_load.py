"""One way to load weight files: safetensors, or PyTorch files with ``weights_only=True``.

A pickle that needs more than tensors could run code when loaded; torch refuses it and then
suggests ``weights_only=False``, which would run that code. Every weight-loading path of
storymem goes through here (or through :func:`refusal` when a library such as diffusers loads
the file and wraps torch's error), so the user gets our refusal and never that advice.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from storymem_cli.errors import InvalidInputError

REFUSED = (
    "refused: {path} is a pickled file that needs more than tensors to load (or no PyTorch file at all: torch "
    "cannot tell); storymem only loads safetensors and weights-only PyTorch files, so nothing in it ran"
)
HINT = "use the .safetensors files of this model, or convert the file to safetensors from a source you trust"


class PickleRefusedError(InvalidInputError):
    """A weight file is a pickle that would run code to load."""


def _is_pickle_refusal(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # torch's refusal says "Weights only load failed ... weights_only"; garbage is "invalid load key"
        if isinstance(current, pickle.UnpicklingError) and "eights only" in str(current) or "weights_only" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def refusal(err: BaseException, path: Path | str, *, hint: str = HINT) -> PickleRefusedError | None:
    """Our refusal when ``err`` (or what it wraps: diffusers' "Unable to load weights from
    checkpoint file" OSError) is torch refusing a pickle; None for any other error."""
    if not _is_pickle_refusal(err):
        return None
    return PickleRefusedError(REFUSED.format(path=path), hint=hint)


_DIFFUSERS_FILE = re.compile(r"checkpoint file for '([^']+)'")


def refusal_of_library(err: BaseException) -> PickleRefusedError | None:
    """:func:`refusal` for an error raised inside diffusers or transformers while they load a model
    (a component loads when a shot first needs it): the file is named from their message."""
    match = _DIFFUSERS_FILE.search(str(err))
    return refusal(err, match.group(1) if match else "a weight file of the model")


def torch_load(path: Path | str, *, what: str, hint: str = HINT) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a pickle is refused in our words, and a file
    that is not a PyTorch file at all is named with ``what`` it should have been."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InvalidInputError(f"{what} {path} does not exist", hint=hint) from None
    except Exception as err:  # noqa: BLE001  zip, pickle and OS errors all mean "not a weights-only file"
        refused = refusal(err, path, hint=hint)
        if refused is not None:
            raise refused from None
        raise InvalidInputError(f"{what} {path} is not a readable PyTorch file ({type(err).__name__})", hint=hint) from None


def safetensors_load(path: Path | str, *, what: str, hint: str = HINT) -> dict[str, Any]:
    """Every tensor of a .safetensors file; a broken header or a cut file is named, not a traceback."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise InvalidInputError(f"{what} {path} does not exist", hint=hint) from None
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidInputError(f"{what} {path} is not a readable .safetensors file ({err})", hint=hint) from None
