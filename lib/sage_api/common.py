"""Types shared by both custom resources: resources, placement, env vars, conditions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema
from pydantic.alias_generators import to_camel

# A Kubernetes quantity ("500m", "2", "16Gi", or a bare number).
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"}
    ),
]

# An arbitrary JSON object passed through to Kubernetes untouched.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

# Labels for generated objects and pod selectors.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def cel_rule(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL validation the API server evaluates (`x-kubernetes-validations`); `field_path`
    names the field the error is reported on."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validated(*rules: dict[str, str]) -> ConfigDict:
    """The model config of a type whose object-level CEL rules the API server enforces."""
    validations: list[JsonValue] = [dict(rule) for rule in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})


class SageModel(BaseModel):
    """Base for every CRD type: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Resources(SageModel):
    """Compute resources of each pod."""

    gpus: Annotated[int, Field(ge=0, le=64)] = 0
    """Number of GPUs each pod requests (and is limited to). 0 runs on CPU."""

    gpu_resource_name: Annotated[str, Field(min_length=1, max_length=253)] = "nvidia.com/gpu"
    """Extended resource name that counts GPUs on your nodes (e.g. amd.com/gpu)."""

    cpu: Quantity | None = None
    """CPU request and limit per pod, as a Kubernetes quantity (e.g. "4" or "500m")."""

    memory: Quantity | None = None
    """Memory request and limit per pod, as a Kubernetes quantity (e.g. "16Gi")."""


class Toleration(SageModel):
    """A Kubernetes toleration, as in a pod spec."""

    key: str | None = None
    """Taint key the toleration applies to; empty matches all keys (with operator Exists)."""

    operator: Literal["Exists", "Equal"] | None = None
    """How key and value are compared."""

    value: str | None = None
    """Taint value to match (operator Equal)."""

    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""

    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


class EnvVar(SageModel):
    """An environment variable for the container."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    """Variable name."""

    value: str | None = None
    """Literal value."""

    value_from: FreeForm | None = None
    """Source of the value (secretKeyRef, configMapKeyRef, fieldRef...), as in a pod spec."""


class LabelSelectorRequirement(SageModel):
    """One set-based label requirement."""

    key: str
    """Label key."""

    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""

    values: list[str] | None = None
    """Values for In and NotIn."""


class LabelSelector(SageModel):
    """A Kubernetes label selector."""

    match_labels: dict[str, str] | None = None
    """Labels that must all match exactly."""

    match_expressions: list[LabelSelectorRequirement] | None = None
    """Set-based requirements that must all hold."""


class SecretKeyRef(SageModel):
    """A key of a Secret in the object's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Secret name."""

    key: Annotated[str, Field(min_length=1)] = "token"
    """Key within the Secret."""


class Condition(SageModel):
    """A status condition, following the Kubernetes API conventions."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Condition type, e.g. Ready or Progressing."""

    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""

    reason: str | None = None
    """CamelCase machine-readable reason for the last transition."""

    message: str | None = None
    """Human-readable details."""

    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the status last changed."""

    observed_generation: int | None = None
    """The metadata.generation this condition was computed from."""


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
