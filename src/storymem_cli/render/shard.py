"""``--shard K/N``: a deterministic share of a batch, for Slurm arrays and one process per GPU.

Scripts are sorted by resolved path (so the share does not depend on the order
the shell or the user listed them) and dealt round robin: shard K (1-based)
takes positions K-1, K-1+N, ... Every script lands in exactly one shard.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from storymem_cli.errors import InvalidInputError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; K counts from 1 and must be between 1 and N."""
    match = _SHARD.match(text)
    if not match:
        raise InvalidInputError(f"--shard {text!r} is not K/N", hint="e.g. --shard 1/4 ... --shard 4/4")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise InvalidInputError(
            f"--shard {text!r}: K must be between 1 and N (N >= 1)",
            hint="K counts from 1; with a 0-based Slurm array use --shard $((SLURM_ARRAY_TASK_ID+1))/N",
        )
    return k, n


def take_shard(paths: Sequence[Path], k: int, n: int) -> list[Path]:
    """The scripts shard ``k`` of ``n`` renders, in sorted order (empty when k > the number of scripts)."""
    ordered = sorted(paths, key=lambda p: str(Path(p).resolve()))
    return ordered[k - 1 :: n]


def shard_warning(count: int, k: int, n: int) -> str | None:
    """A word when more shares than scripts were asked for: a typo (1/1000000), or an array sized for another
    list. Not refused: a Slurm array sized for a folder of stories must not fail when the folder shrinks."""
    if n <= count:
        return None
    return (
        f"--shard {k}/{n}: {n} shares of {count} script(s): shares {count + 1}-{n} render nothing"
        + ("" if k <= count else f", this one ({k}) included")
    )
