"""Ulysses / ring degrees, the sequence split and the torchrun launch options, as pure functions."""

from __future__ import annotations

import pytest

from storymem_cli.errors import InvalidInputError
from storymem_cli.models.parallel import ParallelDegrees, check_sequence_split, pick_degrees
from storymem_cli.render.parallel import Launch, check_options, launch_from_env

A14B_HEADS = 40


@pytest.mark.parametrize(
    ("world", "ulysses", "ring"),
    [(1, 1, 1), (2, 2, 1), (4, 4, 1), (5, 5, 1), (8, 8, 1), (3, 1, 3), (6, 2, 3), (16, 8, 2)],
)
def test_auto_takes_as_much_ulysses_as_the_40_heads_allow(world, ulysses, ring):
    assert pick_degrees(world, A14B_HEADS) == ParallelDegrees(ulysses=ulysses, ring=ring)


def test_explicit_modes():
    assert pick_degrees(8, A14B_HEADS, "ring") == ParallelDegrees(ulysses=1, ring=8)
    assert pick_degrees(8, A14B_HEADS, "ulysses") == ParallelDegrees(ulysses=8, ring=1)
    with pytest.raises(InvalidInputError, match="40 attention heads do not divide into 3 processes"):
        pick_degrees(3, A14B_HEADS, "ulysses")


def test_cfg_halves_the_processes_and_splits_each_half_as_auto():
    assert pick_degrees(2, A14B_HEADS, "cfg") == ParallelDegrees(ulysses=1, ring=1, cfg=2)
    assert pick_degrees(4, A14B_HEADS, "cfg") == ParallelDegrees(ulysses=2, ring=1, cfg=2)  # Ulysses 2 in each half
    assert pick_degrees(8, A14B_HEADS, "cfg").as_dict() == {"world_size": 8, "ulysses": 4, "ring": 1, "cfg": 2}
    with pytest.raises(InvalidInputError, match="two equal halves"):
        pick_degrees(3, A14B_HEADS, "cfg")


def test_the_paper_size_splits_over_up_to_8_processes_but_7_and_an_odd_size_are_refused():
    for world in (1, 2, 3, 4, 5, 6, 8):
        check_sequence_split(world, 832, 480)  # 52 x 30 = 1560 tokens per latent frame
    with pytest.raises(InvalidInputError, match="1560 tokens per latent frame do not split evenly over 7"):
        check_sequence_split(7, 832, 480)
    check_sequence_split(2, 64, 48)  # tiny: 4 x 3 tokens
    with pytest.raises(InvalidInputError, match=r"--size 64x48: 12 tokens per latent frame do not split evenly over 5"):
        check_sequence_split(5, 64, 48)


def test_launch_from_torchrun_environment():
    assert launch_from_env({}) is None
    assert launch_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    launch = launch_from_env({"WORLD_SIZE": "4", "RANK": "5", "LOCAL_RANK": "1"})
    assert launch == Launch(rank=5, world=4, local_rank=1) and not launch.leader


@pytest.mark.parametrize(
    ("device", "offload", "cache", "message"),
    [
        ("cuda:1", "none", "none", "--device cuda:1: under torchrun each process takes its own GPU"),
        (None, "model", "none", "--offload model cannot be combined with 2 processes"),
        (None, "none", "first-block", "--cache first-block cannot be combined with 2 processes"),
    ],
)
def test_options_that_do_not_mix_with_several_processes(device, offload, cache, message):
    with pytest.raises(InvalidInputError, match=message):
        check_options(Launch(rank=0, world=2, local_rank=0), device, offload, cache)
    check_options(Launch(rank=0, world=2, local_rank=0), "cpu", "none", "none")
