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
    """The scripts shard ``k`` of ``n`` renders, in sorted order."""
    if n > len(paths):  # e.g. 1/1000000: a typo, or a share count meant for another list
        raise InvalidInputError(
            f"--shard {k}/{n}: {n} shares of {len(paths)} script(s), so most shares would render nothing",
            hint="N is the number of processes sharing these scripts: at most the number of scripts",
        )
    ordered = sorted(paths, key=lambda p: str(Path(p).resolve()))
    return ordered[k - 1 :: n]
