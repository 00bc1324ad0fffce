"""The ExaBGP patches in docs/upstream/exabgp each apply to the installed ExaBGP, and their
own tests pass with the patch and fail with its source part taken back out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import exabgp  # type: ignore[import-untyped]
import pytest

PATCHES = sorted((Path(__file__).parents[2] / "docs" / "upstream" / "exabgp").glob("*.patch"))


def tree_with(patch: Path, root: Path) -> list[str]:
    """A copy of the installed ExaBGP under root/src with the patch applied; its tests."""
    shutil.copytree(
        Path(exabgp.__file__).parent, root / "src" / "exabgp", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(["git", "apply", "-p1", str(patch)], cwd=root, check=True, capture_output=True)
    return sorted(str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py"))


def run_tests(root: Path, tests: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_there_are_patches() -> None:
    assert len(PATCHES) >= 2


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name[:4])
def test_patch_applies_and_its_test_fails_without_it(patch: Path, tmp_path: Path) -> None:
    tests = tree_with(patch, tmp_path)
    assert tests, "a patch comes with its test"
    fixed = run_tests(tmp_path, tests)
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    # the source part taken back out: the test must see the defect
    subprocess.run(["git", "apply", "-R", "-p1", "--include=src/*", str(patch)], cwd=tmp_path, check=True)
    unfixed = run_tests(tmp_path, tests)
    assert unfixed.returncode == 1 and "failed" in unfixed.stdout, unfixed.stdout[-3000:]
