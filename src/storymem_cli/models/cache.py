"""Model folders storymem writes itself (the tiny and toy presets), built once into a cache and reused.

``$STORYMEM_CACHE`` or ``$XDG_CACHE_HOME/storymem`` (``~/.cache/storymem``); a read-only home falls back
to the temp folder. A folder is built beside its final name and renamed into place, so concurrent
renders and a kill mid-build never see half a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("STORYMEM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "storymem"
    return Path(root)


def cached_model_dir(name: str, marker: str, build: Callable[[Path], object]) -> Path:
    """``cache_root() / name``, written by ``build(folder)`` unless ``folder / marker`` already exists."""
    dest = cache_root() / name
    if (dest / marker).is_file():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home (some CI sandboxes): build under the temp folder instead
        dest = Path(tempfile.gettempdir()) / "storymem" / name
        if (dest / marker).is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / marker).is_file():  # someone else's half-built folder: should not happen
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
