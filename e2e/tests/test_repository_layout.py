"""Rules of the repository layout that tools would otherwise report obscurely."""

from __future__ import annotations

from collections import defaultdict

from sage_harness.repo import REPO_ROOT, TEST_FOLDERS


def test_test_files_have_unique_names() -> None:
    """The suite imports test modules by file name (`--import-mode=append`, see docs/decisions.md)."""
    seen: dict[str, list[str]] = defaultdict(list)
    for folder in TEST_FOLDERS:
        for path in (REPO_ROOT / folder).rglob("test_*.py"):
            seen[path.name].append(str(path.relative_to(REPO_ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_no_package_is_named_operator() -> None:
    assert not (REPO_ROOT / "operator" / "__init__.py").exists(), "a package named operator shadows the stdlib"
