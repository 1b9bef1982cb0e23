"""Per-shot seeds.

The release uses ``base + index within the scene``, so shot 1 of every scene
gets the same seed (SPEC 4). Here a shot's seed is ``base + global index``:
distinct for every shot of a story, easy to recompute by hand, and recorded in
run.json. A seed set on the shot in the script wins.
"""

from __future__ import annotations

DEFAULT_BASE_SEED = 0  # any fixed value: a story renders the same every time unless --seed changes it
SEED_MODULUS = 2**32  # torch.Generator.manual_seed and numpy accept 32-bit seeds everywhere


def shot_seed(base_seed: int, global_index: int, override: int | None = None) -> int:
    """The seed of shot ``global_index`` (0-based, across scenes)."""
    if override is not None:
        return override
    return (base_seed + global_index) % SEED_MODULUS
