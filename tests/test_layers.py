"""The layer rules in pyproject.toml ([tool.importlinter]) hold, and the checker really checks.

`make lint` runs the same contracts; this test puts them in the README's test command, so CI
fails when a change breaks one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(config: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_are_kept() -> None:
    done = _lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    assert done.stdout.count("KEPT") >= 8


def test_a_deliberate_violation_fails_the_check(tmp_path: Path) -> None:
    """A contract the code breaks on purpose (the store imports the data model) is reported
    with the import chain, and the exit status is 1."""
    config = tmp_path / "violation.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "meshinsights"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "store must not import model (deliberately false)"\n'
        'type = "forbidden"\nsource_modules = ["meshinsights.store"]\n'
        'forbidden_modules = ["meshinsights.model"]\n'
    )
    done = _lint(config)
    assert done.returncode == 1, done.stdout
    assert "BROKEN" in done.stdout
    assert "meshinsights.store.delta -> meshinsights.model" in done.stdout
