"""Fixtures for every test folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="session")
def child_env() -> Callable[..., dict[str, str]]:
    """The environment for a ``python -m storymem_cli`` child process: this checkout's src/ first on
    PYTHONPATH, in front of what is already there (a machine may bring its packages that way), plus
    ``extra`` variables."""

    def make(**extra: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, **extra}

    return make
