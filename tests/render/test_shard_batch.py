"""--shard and batch bookkeeping: pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from storymem_cli.errors import InvalidInputError, StorymemError
from storymem_cli.render.batch import StoryJob, batch_exit_code, plan_jobs, run_jobs
from storymem_cli.render.shard import parse_shard, take_shard


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_cover_every_script_exactly_once(n):
    scripts = [Path(f"/stories/s{i:02d}.json") for i in range(10)]
    shares = [take_shard(list(reversed(scripts)), k, n) for k in range(1, n + 1)]
    flat = [p for share in shares for p in share]
    assert sorted(flat) == sorted(scripts) and len(flat) == len(scripts)
    # The share does not depend on the order the scripts were given in.
    assert shares == [take_shard(scripts, k, n) for k in range(1, n + 1)]


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "a/b", "3"])
def test_bad_shard_is_invalid_input(bad):
    with pytest.raises(InvalidInputError):
        parse_shard(bad)


def test_parse_shard():
    assert parse_shard(" 2 / 5 ") == (2, 5)


def test_output_folders(tmp_path):
    assert plan_jobs([Path("a/x.json")], None, batch=False) == [StoryJob(Path("a/x.json"), Path("runs/x"))]
    assert plan_jobs([Path("x.json")], tmp_path, batch=False)[0].run_dir == tmp_path
    jobs = plan_jobs([Path("a/x.json"), Path("b/y.json")], tmp_path, batch=True)
    assert [j.run_dir for j in jobs] == [tmp_path / "x", tmp_path / "y"]
    with pytest.raises(InvalidInputError, match="same folder"):
        plan_jobs([Path("a/x.json"), Path("b/x.json")], tmp_path, batch=True)


def test_run_jobs_goes_on_past_failures():
    def render_one(job):
        if job.script.name == "bad.json":
            raise InvalidInputError("broken")
        if job.script.name == "bug.json":
            raise ZeroDivisionError("oops")
        return {"story": job.script.stem}

    seen = []
    jobs = [StoryJob(Path(n), Path("o")) for n in ["a.json", "bad.json", "b.json", "bug.json"]]
    results, failures = run_jobs(jobs, render_one, seen.append)
    assert [r["story"] for r in results] == ["a", "b"]
    assert [f.script.name for f in failures] == ["bad.json", "bug.json"] and seen == failures
    assert "ZeroDivisionError" in failures[1].message
    assert batch_exit_code(failures) == 1
    assert batch_exit_code(failures[:1]) == 2
    assert batch_exit_code([]) == 0
    assert isinstance(StorymemError("x"), Exception)


def test_more_shares_than_scripts_is_a_word_not_a_refusal():
    # A Slurm array sized for a folder of stories must not fail when the folder shrinks; the surplus is said.
    from storymem_cli.render.shard import shard_warning, take_shard

    scripts = [Path(f"s{i}.json") for i in range(3)]
    assert shard_warning(3, 2, 3) is None
    assert "shares 4-8 render nothing" in shard_warning(3, 2, 8)
    assert "this one (5) included" in shard_warning(3, 5, 8)
    assert [take_shard(scripts, k, 8) for k in (1, 3, 4, 8)] == [[scripts[0]], [scripts[2]], [], []]
