"""Fixtures: the tiny preset and a request for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_request():
    from storymem_cli.models.presets import TINY
    from storymem_cli.pipeline.request import ShotRequest

    def make(**kw):
        base = {"mode": "m2v", "prompt": "a lighthouse at dusk", "width": TINY.video.width, "height": TINY.video.height,
                    "frames": TINY.video.frames, "steps": 2, "seed": 3}  # fmt: skip
        return ShotRequest(**{**base, **kw})

    return make
