"""Toy-world test helpers: the detector's measured accuracies are printed after the run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

MEASURED: dict[str, str] = {}  # filled by tests/toy/test_detect.py


@pytest.fixture
def report_measurement():
    """Record a line for the terminal summary: tests may not print (pytest captures it)."""

    def record(name: str, text: str) -> None:
        MEASURED[name] = text

    return record


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


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("toy detector, measured")
        for name, text in MEASURED.items():
            terminalreporter.write_line(f"{name}: {text}")
