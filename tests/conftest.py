"""Fixtures for every test folder."""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# The suite starts ~40 Python children (renders killed and resumed, torchrun ranks, dry runs): with
# PYTHONDONTWRITEBYTECODE set (some machines and CI images set it), each compiled all of storymem
# from source again. They and this process may leave __pycache__ folders (ignored by git), as Python
# does by default.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection imported (torch, diffusers, transformers, every test module: millions of
    objects that live until the end) out of the garbage collector's view. Each full collection walked
    them all, 0.45 s on 2 cores, about 50 times a run, plus every release of an expert pair
    (models/story_model.py). What the tests create afterwards is collected as before, in full a tenth
    as often (the many short-lived models of a run kept triggering full collections: 12 s a run)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


@pytest.fixture(scope="session", autouse=True)
def _cli_built_once():
    """typer builds the click commands of an app anew on every ``CliRunner().invoke(app, ...)`` (20 ms,
    about 600 times a run); no test changes the app, so its commands are built once. Other apps pass
    through."""
    import typer.testing

    from storymem_cli.cli.app import app

    build = typer.testing._get_command
    command = build(app)
    patch = pytest.MonkeyPatch()
    patch.setattr(typer.testing, "_get_command", lambda other: command if other is app else build(other))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def child_env() -> Callable[..., dict[str, str]]:
    """The environment for a ``python -m storymem_cli`` child process: this checkout's src/ first on
    PYTHONPATH, in front of what is already there (a machine may bring its packages that way), plus
    ``extra`` variables."""

    def make(**extra: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, **extra}

    return make


@pytest.fixture(scope="session")
def wait_for_line() -> Callable[..., list[str]]:
    """Read a child process's stderr (opened with ``text=True``) line by line until a line contains
    ``text``; returns the lines read. An event to wait on rather than a clock, so that a loaded
    machine is only slower: a child that exits first fails the test with what it printed."""

    def wait(proc, text: str) -> list[str]:
        seen: list[str] = []
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                return seen
        proc.wait()
        pytest.fail(f"the child exited ({proc.returncode}) before printing {text!r}:\n{''.join(seen)}")

    return wait


@pytest.fixture(scope="session")
def torchrun(child_env) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node N ARGS`` as a child.

    --standalone lets torchrun pick a free port; its own session lets a timeout end the workers too
    (they outlive a killed agent and would hold the pipes open). OMP_NUM_THREADS=1 unless given.
    """

    def run(args: list[str], nproc: int = 2, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
        env = child_env(**{"OMP_NUM_THREADS": "1", **extra})
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"torchrun did not finish in {timeout} s:\n{err[-3000:]}")
        return subprocess.CompletedProcess(command, proc.returncode, out, err)

    return run


@pytest.fixture
def load_benchmark():
    """A script of benchmarks/ imported as a module by name ("toy_consistency"): they are scripts, not a package."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
        return module

    return load
