"""Which third-party distributions a package needs at run time, read from its source (ast), and
which ones an install of `sage[extra]` brings (package metadata). Tests compare the two so that an
image installing `sage[extra]` never meets an ImportError the development environment hides."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_OPTIONAL_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _guarded(handlers: list[ast.ExceptHandler]) -> bool:
    names: set[str] = set()
    for handler in handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names |= {kind.id for kind in kinds if isinstance(kind, ast.Name)}
    return bool(names & _OPTIONAL_IMPORT_ERRORS)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(source: str, package: str) -> Iterator[str]:
    """Absolute names of the modules a module imports at run time, with `package` the package the
    module belongs to (for relative imports). Imports under `if TYPE_CHECKING:` and in `try:`
    blocks that catch ImportError (optional dependencies) are left out."""

    def names(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            return
        module = node.module or ""
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{module}" if module else base
        yield module
        yield from (f"{module}.{alias.name}" for alias in node.names)

    def visit(nodes: Iterable[ast.AST]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield from names(node)
            elif isinstance(node, ast.If) and _type_checking(node.test):
                yield from visit(node.orelse)
            elif isinstance(node, ast.Try) and _guarded(node.handlers):
                yield from visit([*node.orelse, *node.finalbody])
            else:
                yield from visit(ast.iter_child_nodes(node))

    yield from visit([ast.parse(source)])


def _module_file(name: str, roots: list[Path]) -> Path | None:
    parts = name.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def third_party_imports(entry: str, roots: list[Path], first_party_prefix: str = "sage_") -> set[str]:
    """Top-level third-party module names imported by every module of package `entry` and by the
    first-party modules those import, transitively."""
    start = _module_file(entry, roots)
    if start is None:
        msg = f"package {entry} not found under {roots}"
        raise FileNotFoundError(msg)
    queue = [(entry, path) for path in start.parent.rglob("*.py") if "tests" not in path.parts]
    queue = [(_dotted(entry, start.parent, path), path) for _, path in queue]
    seen: set[Path] = set()
    found: set[str] = set()
    while queue:
        module, path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name in imported_modules(path.read_text(), package):
            top = name.split(".")[0]
            if not top or top in sys.stdlib_module_names or top == "__future__":
                continue
            if top.startswith(first_party_prefix):
                target = _module_file(name, roots)
                if target is not None:
                    queue.append((name, target))
            else:
                found.add(top)
    return found


def _dotted(entry: str, package_dir: Path, path: Path) -> str:
    relative = path.relative_to(package_dir).with_suffix("")
    parts = [p for p in relative.parts if p != "__init__"]
    return ".".join([entry, *parts])


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    """Top-level module -> the installed distributions providing it (canonical names)."""
    mapping = metadata.packages_distributions()
    return {module: {canonicalize_name(d) for d in mapping.get(module, [])} for module in modules}


def installed_closure(requirements: Iterable[str]) -> set[str]:
    """Canonical names of the distributions pip would install for `requirements`, following the
    installed metadata, extras included (markers evaluated for this interpreter)."""
    result: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [(Requirement(r), frozenset[str]()) for r in requirements]
    while pending:
        requirement, parent_extras = pending.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (parent_extras or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        result.add(name)
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            continue
        pending += [(Requirement(r), extras) for r in requires]
    return result
