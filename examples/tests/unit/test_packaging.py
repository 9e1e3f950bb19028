"""The examples as their own distribution: a wheel holding ``tenancy_examples`` with its
templates and migrations, and its commands plugged into the installed ``tenancy``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(EXAMPLES), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("tenancy_examples-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_the_examples_with_their_files(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert {n.split("/")[0] for n in names} == {
        "tenancy_examples",
        "tenancy_examples-0.1.0.dist-info",
    }
    for needed in (
        "tenancy_examples/console/templates/home.html",
        "tenancy_examples/console/static/console.css",
        "tenancy_examples/worklogs/migrations/env.py",
        "tenancy_examples/worklogs/migrations/versions/0006_key_hierarchy.py",
        "tenancy_examples/edge/README.md",
    ):
        assert needed in names


def test_the_wheel_plugs_into_the_librarys_entry_point_groups(wheel: zipfile.ZipFile) -> None:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    groups = ConfigParser()
    groups.read_string(wheel.read(name).decode())
    assert dict(groups["tenancy.cli"]) == {"examples": "tenancy_examples.cli:register"}
    assert set(groups["tenancy.export_sources"]) == {"worklogs"}
    assert set(groups["tenancy.erasure_tables"]) == {"worklogs"}


@pytest.mark.parametrize("command", [["demo"], ["serve"], ["dev-token"], ["db", "migrate"]])
def test_the_installed_tenancy_command_has_the_examples_commands(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tenancy.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"usage: tenancy {' '.join(command)} ")
