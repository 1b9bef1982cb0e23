"""The story-level MagCache figures docs/models.md prints (benchmarks/magcache_schedule.py), from the curves alone."""

from __future__ import annotations

from storymem_cli.models import magcache


def test_story_share_skipped_at_the_authors_threshold():
    auto = magcache.story_skipped_work(0.06, 2)
    both = magcache.story_skipped_work(0.06, 2, experts="both")
    assert 0.25 < auto < both < 0.6  # memory shots: 12 of 40 steps (low-noise only), 20 of 40 with both experts
    assert magcache.story_skipped_work(0.02, 2) < auto  # a lower threshold skips less
