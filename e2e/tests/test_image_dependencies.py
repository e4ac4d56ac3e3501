"""Each image installs `sage[<extra>]` and runs one package: every third-party module that
package imports (directly or through the first-party modules it uses) must come with the base
dependencies plus that extra. The development environment has every extra installed, so without
this check a missing dependency shows only as an ImportError in a freshly built image."""

from __future__ import annotations

import tomllib

import pytest

from sage_harness.import_closure import distributions_of, imported_modules, installed_closure, third_party_imports
from sage_harness.repo import REPO_ROOT, SOURCE_FOLDERS

ROOTS = [REPO_ROOT / d for d in SOURCE_FOLDERS]
# image -> (the extra its Dockerfile installs, the package its entry point runs)
IMAGES = {
    "operator": ("operator", "sage_operator"),
    "gateway": ("gateway", "sage_gateway"),
    "engine": ("engine", "sage_engine"),
    "finetune": ("finetune", "sage_finetune"),
}


def requirements_of(extra: str) -> list[str]:
    """The base dependencies plus those of `extra`, as pyproject.toml lists them."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"][extra]]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_extra_brings_everything_the_package_imports(image: str) -> None:
    extra, package = IMAGES[image]
    dockerfile = (REPO_ROOT / "images" / image / "Dockerfile").read_text()
    assert f"[{extra}]" in dockerfile, f"images/{image}/Dockerfile does not install sage[{extra}]"
    available = installed_closure(requirements_of(extra))
    missing = {
        module: sorted(providers)
        for module, providers in distributions_of(third_party_imports(package, ROOTS)).items()
        if not providers & available
    }
    assert missing == {}, f"add these to the `{extra}` extra in pyproject.toml: {missing}"


def test_reader_sees_optional_and_type_only_imports_for_what_they_are() -> None:
    source = (
        "import os\n"
        "import kopf\n"
        "from . import sibling\n"
        "from ..api import names\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import torch\n"
        "try:\n"
        "    import uvloop\n"
        "except ImportError:\n"
        "    uvloop = None\n"
        "def later():\n"
        "    import aiohttp\n"
    )
    found = set(imported_modules(source, "sage_x.sub"))
    assert {"os", "kopf", "sage_x.sub.sibling", "sage_x.api.names", "aiohttp"} <= found
    assert "torch" not in found
    assert "uvloop" not in found


def test_closure_follows_extras_of_dependencies() -> None:
    closure = installed_closure(["uvicorn[standard]"])
    assert {"uvicorn", "uvloop", "httptools"} <= closure
    assert "uvloop" not in installed_closure(["uvicorn"])
