"""Bad scripts, options and busy folders are refused before torch is imported (issue 23, item 10)."""

from __future__ import annotations

import json
import subprocess
import sys

from storymem_cli.render.runfolder import RunFolder

from .conftest import STORY, write_script

# Runs the CLI in a fresh interpreter and reports whether torch got imported on the way to the error.
PROBE = """
import json, sys
from storymem_cli.cli.app import main
out = []
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code
    out.append({"code": code, "torch": "torch" in sys.modules})
print(json.dumps(out))
"""


def test_bad_input_is_refused_before_torch_is_imported(tmp_path, child_env):
    script = write_script(tmp_path, "lantern.json", STORY)
    busy = RunFolder(tmp_path / "busy")
    busy.prepare()
    cases = [
        (["render", str(tmp_path / "nope.json"), "-o", str(tmp_path / "a")], "nope.json: no such script file"),
        (["render", str(script), "-o", str(tmp_path / "b"), "--size", "60x48"], "multiples of 16"),
        (["render", str(script), "-o", str(tmp_path / "c"), "--frames", "10"], "4k+1"),
        # the model is known without torch here, so the checks that need its defaults run too
        (["render", str(script), "-o", str(tmp_path / "d"), "--model", "tiny", "--continuation", "mm2v", "--frames", "5"], "too few"),
        (["render", str(script), "-o", str(busy.root), "--model", "tiny"], "another storymem process (a render or add-reference) is writing"),
    ]
    with busy.locked():  # as another process's render would hold it
        result = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps([argv for argv, _ in cases])],
            capture_output=True, text=True, env=child_env(), timeout=240,
        )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    for (argv, needle), outcome in zip(cases, outcomes):
        assert outcome["code"] in (2, 4), (argv, outcome)  # invalid input; busy
        assert not outcome["torch"], argv
        assert needle in result.stderr, (needle, result.stderr)
    assert "model:" not in result.stderr  # nothing was resolved or loaded


def test_a_dry_run_with_the_default_model_does_not_import_torch(tmp_path, child_env):
    """--model auto needs to know whether there is a CUDA GPU; a dry run must not import torch for
    that (models/cuda_probe.py), whatever this machine has."""
    script = write_script(tmp_path, "lantern.json", STORY)
    argv = ["render", str(script), "-o", str(tmp_path / "run"), "--dry-run", "--json"]
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps([argv])], capture_output=True, text=True,
                            env=child_env(), timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])[0]
    assert outcome == {"code": 0, "torch": False}, result.stderr
    plan = json.loads(result.stdout[: result.stdout.rindex("\n[")])
    assert len(plan["shots"]) == 5 and plan["model"] in ("toy", "wan2.2-a14b")
