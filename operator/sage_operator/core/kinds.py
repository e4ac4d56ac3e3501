"""Every kind of object the operator reads or writes, in one table (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sage_api import names


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str


DEPLOYMENT: Final = Kind("apps/v1", "Deployment", "deployments")
SERVICE: Final = Kind("v1", "Service", "services")
POD: Final = Kind("v1", "Pod", "pods")
JOB: Final = Kind("batch/v1", "Job", "jobs")
SERVICE_ACCOUNT: Final = Kind("v1", "ServiceAccount", "serviceaccounts")
ROLE: Final = Kind("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDING: Final = Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
NETWORK_POLICY: Final = Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
SECRET: Final = Kind("v1", "Secret", "secrets")
CONFIG_MAP: Final = Kind("v1", "ConfigMap", "configmaps")
DISRUPTION_BUDGET: Final = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
EVENT: Final = Kind("v1", "Event", "events")
LLM_ENGINE: Final = Kind(names.API_VERSION, names.ENGINE_KIND, names.ENGINE_PLURAL)
FINETUNE_JOB: Final = Kind(names.API_VERSION, names.FINETUNE_KIND, names.FINETUNE_PLURAL)

_BY_TYPE = {
    (kind.api_version, kind.kind): kind
    for kind in (
        DEPLOYMENT,
        SERVICE,
        POD,
        JOB,
        SERVICE_ACCOUNT,
        ROLE,
        ROLE_BINDING,
        NETWORK_POLICY,
        SECRET,
        CONFIG_MAP,
        DISRUPTION_BUDGET,
        EVENT,
        LLM_ENGINE,
        FINETUNE_JOB,
    )
}


def kind_of(manifest: dict[str, Any]) -> Kind:
    """The Kind of a rendered manifest (KeyError: a kind the operator never writes)."""
    return _BY_TYPE[(manifest["apiVersion"], manifest["kind"])]


@dataclass(frozen=True)
class Owner:
    """A kind the operator reconciles, and how everything it creates for one is marked."""

    kind: Kind
    app: str
    """`app.kubernetes.io/name` of the children."""
    component: str
    """`app.kubernetes.io/component` of the children."""
    label: str
    """The label naming the owning object on every child (`sage.ai/engine`, `sage.ai/finetunejob`);
    the children are watched by it, server-side."""


ENGINE_OWNER: Final = Owner(LLM_ENGINE, "sage-engine", "engine", names.LABEL_ENGINE)
FINETUNE_OWNER: Final = Owner(FINETUNE_JOB, "sage-finetune", "finetune", names.LABEL_FINETUNEJOB)
