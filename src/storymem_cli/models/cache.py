"""Model folders storymem writes itself (the tiny and toy presets), built once into a cache and reused.

``$STORYMEM_CACHE`` or ``$XDG_CACHE_HOME/storymem`` (``~/.cache/storymem``); a read-only home falls back
to the temp folder. A folder is built beside its final name and renamed into place, so concurrent
renders and a kill mid-build never see half a model.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from storymem_cli.errors import StorymemError


def cache_root() -> Path:
    root = os.environ.get("STORYMEM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "storymem"
    return Path(root)


def _disk_full(err: BaseException) -> bool:
    # safetensors reports ENOSPC in its own error type, with the OS message in the text
    return getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)


def cached_model_dir(name: str, marker: str, build: Callable[[Path], object]) -> Path:
    """``cache_root() / name``, written by ``build(folder)`` unless ``folder / marker`` already exists.
    A cache root that cannot be written (a read-only home or ``$STORYMEM_CACHE``) falls back to the
    temp folder; a full disk is named, not a traceback."""
    roots = [cache_root(), Path(tempfile.gettempdir()) / "storymem"]
    for root in roots:
        dest = root / name
        if (dest / marker).is_file():
            return dest
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
        except OSError:  # not writable here: the next root
            continue
        try:
            build(tmp)
            try:
                os.replace(tmp, dest)
            except OSError:
                if not (dest / marker).is_file():  # someone else's half-built folder: should not happen
                    raise
        except Exception as err:
            if _disk_full(err):
                raise StorymemError(
                    f"the disk is full while writing the model cache {dest}",
                    hint="free some space, or set STORYMEM_CACHE to a folder on another disk",
                ) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest
    raise StorymemError(
        f"cannot write the model cache: {' and '.join(str(r) for r in roots)} are not writable",
        hint="set STORYMEM_CACHE to a writable folder",
    )
