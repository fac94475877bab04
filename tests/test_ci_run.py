"""`.ci/run` refuses to start when an install script is missing or has lost its execute bit.

Without the scripts, Postfix and Samba are never installed and their tests have nothing to run
against; CI must say so at once instead of reporting a green run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("install-postfix.sh", "samba-dc.sh")


def _ci_tree(tmp_path: Path) -> Path:
    """A copy of `.ci/run` and the install scripts (modes kept), away from the real checkout."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "scripts").mkdir()
    for name in SCRIPTS:
        shutil.copy2(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    return tmp_path


def _run_ci(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tree / ".ci" / "run")], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_install_scripts_in_the_checkout_are_executable() -> None:
    for name in SCRIPTS:
        assert os.access(ROOT / "scripts" / name, os.X_OK), f"scripts/{name} lost its execute bit"


@pytest.mark.parametrize("script", SCRIPTS)
def test_ci_stops_and_names_an_install_script_without_its_execute_bit(
    tmp_path: Path, script: str
) -> None:
    tree = _ci_tree(tmp_path)
    (tree / "scripts" / script).chmod(0o644)

    done = _run_ci(tree)

    assert done.returncode == 1
    assert f"scripts/{script} is not executable" in done.stderr
    assert "FAILED before running anything" in done.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_ci_stops_and_names_a_missing_install_script(tmp_path: Path, script: str) -> None:
    tree = _ci_tree(tmp_path)
    (tree / "scripts" / script).unlink()

    done = _run_ci(tree)

    assert done.returncode == 1
    assert f"scripts/{script} is missing" in done.stderr
    assert "FAILED before running anything" in done.stderr
