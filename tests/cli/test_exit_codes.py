"""The exit codes are one table: errors.py, storymem --help and README's "Exit codes" agree."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from storymem_cli.cli.app import app
from storymem_cli.errors import (
    EXIT_CODES,
    BusyError,
    DeclinedError,
    InvalidInputError,
    MissingHardwareError,
    MissingWeightsError,
    StorymemError,
)
from storymem_cli.render.batch import Failure, batch_exit_code
from storymem_cli.render.runfolder import FolderBusyError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_code_once():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("Exit codes, the same for every command"):]
    rows = re.findall(r"^\| (\d+) \| ", table[: table.index("\n\n", table.index("| code |"))], re.MULTILINE)
    assert [int(code) for code in rows] == [code for code, _ in EXIT_CODES]


def test_help_lists_the_codes():
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    for code, name in EXIT_CODES:
        assert f"{code} {name}" in out


def test_each_kind_of_error_has_its_code():
    assert StorymemError("x").exit_code == 1 and InvalidInputError("x").exit_code == 2
    assert MissingWeightsError("x").exit_code == MissingHardwareError("x").exit_code == 3
    assert BusyError("x").exit_code == FolderBusyError("x").exit_code == 4
    assert DeclinedError("x").exit_code == 5


def test_a_batch_keeps_a_code_its_failures_share():
    def failed(*codes):
        return batch_exit_code([Failure(Path(f"{i}.json"), "m", code) for i, code in enumerate(codes)])

    assert failed() == 0 and failed(2, 2) == 2 and failed(3) == 3 and failed(2, 3) == 1
