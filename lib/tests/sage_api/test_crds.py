"""The CRDs are generated from the models, current on disk, and fully described."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sage_api import names
from sage_api.crds import all_crds, finetunejob_crd, llmengine_crd
from sage_api.write_crds import render_files
from sage_harness.repo import REPO_ROOT

CRD_FOLDERS = [folder for folder in ("crds", "charts/sage/crds") if (REPO_ROOT / folder).exists()]


@pytest.mark.parametrize("folder", CRD_FOLDERS)
def test_files_on_disk_are_generated_from_the_models(folder: str) -> None:
    path = REPO_ROOT / folder
    for name, text in render_files().items():
        on_disk = (path / name).read_text()
        assert on_disk == text, f"{folder}/{name} is stale: run `make crds`"


def _properties(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from _properties(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _properties(schema["items"], f"{path}[]")


@pytest.mark.parametrize("crd", list(all_crds().values()), ids=list(all_crds()))
def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented = [path for path, sub in _properties(schema) if path != ".metadata" and not sub.get("description")]
    assert undocumented == []


@pytest.mark.parametrize("crd", list(all_crds().values()), ids=list(all_crds()))
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    text = str(crd)
    assert "$ref" not in text
    assert "'anyOf'" not in text
    assert "'title'" not in text


def test_names_do_not_drift() -> None:
    engine = llmengine_crd()["spec"]
    assert engine["group"] == "sage.ai"
    assert engine["names"]["plural"] == "llmengines"
    assert engine["names"]["shortNames"] == ["llme"]
    assert engine["names"]["categories"] == ["sage"]
    version = engine["versions"][0]
    assert version["name"] == "v1alpha1"
    assert set(version["subresources"]) == {"status", "scale"}
    finetune = finetunejob_crd()["spec"]
    assert finetune["names"]["plural"] == "finetunejobs"
    assert finetune["names"]["shortNames"] == ["ftj"]
    assert set(finetune["versions"][0]["subresources"]) == {"status"}
    assert names.API_VERSION == "sage.ai/v1alpha1"


def test_printer_columns() -> None:
    engine = [c["name"] for c in llmengine_crd()["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert engine == ["Model", "Kind", "Backend", "Ready", "Phase", "Age", "Endpoint", "Served", "Scaling"]
    finetune = [c["name"] for c in finetunejob_crd()["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert finetune == ["Base", "Phase", "Progress", "Loss", "Age"]


def test_autoscaling_fields_explain_themselves_in_kubectl_explain() -> None:
    spec = llmengine_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert "held by the gateway" in spec["minReplicas"]["description"]
    assert "kubectl scale" in spec["maxReplicas"]["description"]
    assert "ceil(" in spec["targetInflightRequests"]["description"]
    assert "default 300" in spec["scaleDownDelaySeconds"]["description"]
