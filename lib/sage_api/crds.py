"""The CustomResourceDefinitions (LLMEngine, FinetuneJob, APIKey), rendered from the pydantic models (pure)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sage_api import names
from sage_api.apikey import APIKeySpec
from sage_api.common import cel_rule
from sage_api.engine import LLMEngineSpec, LLMEngineStatus
from sage_api.finetune import FinetuneJobSpec, FinetuneJobStatus
from sage_api.schema import structural_schema


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        column["priority"] = priority
    if description:
        column["description"] = description
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")


# Names the children take from their owner: an engine's Service (a DNS-1035 label) and a
# FinetuneJob's Job (whose pods carry its name in a label: at most 63 characters). Refused at
# admission, naming the field, rather than accepted and then Failed when the child is refused.
_LABEL_SIZE = cel_rule("self.metadata.name.size() <= 63", "metadata.name must be at most 63 characters")
ENGINE_NAME_RULES = (
    _LABEL_SIZE,
    cel_rule(
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must start with a letter and hold only a-z, 0-9 and '-' (it names the engine's Service)",
    ),
)
FINETUNE_NAME_RULES = (
    _LABEL_SIZE,
    cel_rule(
        "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must hold only a-z, 0-9 and '-' (it names the training Job)",
    ),
)


def _root_schema(
    spec: type[BaseModel], status: type[BaseModel] | None, description: str, name_rules: tuple[dict[str, str], ...]
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": "API version: sage.ai/v1alpha1."},
        "kind": {"type": "string", "description": "Kind of the object."},
        "metadata": {"type": "object"},
        "spec": structural_schema(spec),
    }
    if status is not None:
        properties["status"] = structural_schema(status)
    schema: dict[str, Any] = {"type": "object", "description": description}
    if name_rules:
        schema["x-kubernetes-validations"] = list(name_rules)
    return {**schema, "required": ["spec"], "properties": properties}


def _crd(
    resource: names.ResourceNames,
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    subresources: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{resource.plural}.{names.GROUP}",
            "labels": {names.LABEL_NAME: "sage", "app.kubernetes.io/part-of": "sage"},
        },
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                **({"shortNames": list(resource.short_names)} if resource.short_names else {}),
                "categories": [names.CATEGORY],
            },
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


_ENGINE_COLUMNS = [
    _column("Model", ".spec.model", description="The model served"),
    _column("Kind", ".spec.engineKind", description="llm or embedding"),
    _column("Backend", ".status.backend", description="Engine server in use"),
    _column("Ready", ".status.ready", description="Ready/desired replicas"),
    _column("Phase", ".status.phase"),
    _AGE,
    _column("Endpoint", ".status.endpoint", priority=1),
    _column("Served", ".status.servedModels", priority=1, description="Names clients can use"),
    _column(
        "Scaling",
        '.status.conditions[?(@.type=="Scaled")].message',
        priority=1,
        description="The autoscaler's last change and why",
    ),
]
_ENGINE_SCALE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}
_FINETUNE_COLUMNS = [
    _column("Base", ".spec.baseModel", description="Model being fine-tuned"),
    _column("Phase", ".status.phase"),
    _column("Progress", ".status.progressText"),
    _column("Loss", ".status.progress.loss", "number"),
    _AGE,
]


def llmengine_crd() -> dict[str, Any]:
    """The LLMEngine CRD, with status and scale subresources."""
    description = "An LLM or embedding model served by engine pods behind an OpenAI-compatible API."
    schema = _root_schema(LLMEngineSpec, LLMEngineStatus, description, ENGINE_NAME_RULES)
    return _crd(names.ENGINE, schema, _ENGINE_COLUMNS, {"status": {}, "scale": _ENGINE_SCALE})


def finetunejob_crd() -> dict[str, Any]:
    """The FinetuneJob CRD, with a status subresource."""
    description = "A LoRA or full fine-tune run as a Kubernetes Job, with progress in its status."
    schema = _root_schema(FinetuneJobSpec, FinetuneJobStatus, description, FINETUNE_NAME_RULES)
    return _crd(names.FINETUNE, schema, _FINETUNE_COLUMNS, {"status": {}})


_APIKEY_COLUMNS = [
    _column("Models", ".spec.models", description="Models the key may use (unset: all)"),
    _column("Namespaces", ".spec.namespaces", description="Namespaces whose engines it may use (unset: all)"),
    _column("RPM", ".spec.requestsPerMinute", "integer"),
    _column("TPM", ".spec.tokensPerMinute", "integer"),
    _column("Expires", ".spec.expiresAt"),
    _column("Disabled", ".spec.disabled", "boolean", priority=1),
    _AGE,
]


def apikey_crd() -> dict[str, Any]:
    """The APIKey CRD: a key's hash and policy; no status (nothing about a key is ever reported)."""
    description = "A client key of the SAGE gateway, held as a SHA-256 hash, with its models and limits."
    schema = _root_schema(APIKeySpec, None, description, ())
    return _crd(names.APIKEY, schema, _APIKEY_COLUMNS, {})


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, as written under crds/."""
    return {
        f"{names.ENGINE_PLURAL}.yaml": llmengine_crd(),
        f"{names.FINETUNE_PLURAL}.yaml": finetunejob_crd(),
        f"{names.APIKEY_PLURAL}.yaml": apikey_crd(),
    }
