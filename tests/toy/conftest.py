"""Toy-world test helpers: the detector's measured accuracies are printed after the run."""

from __future__ import annotations

import pytest

MEASURED: dict[str, str] = {}  # filled by tests/toy/test_detect.py


@pytest.fixture
def report_measurement():
    """Record a line for the terminal summary: tests may not print (pytest captures it)."""

    def record(name: str, text: str) -> None:
        MEASURED[name] = text

    return record


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("toy detector, measured")
        for name, text in MEASURED.items():
            terminalreporter.write_line(f"{name}: {text}")
