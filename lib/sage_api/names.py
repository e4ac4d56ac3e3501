"""Names that must not drift: API group, kinds, plurals, labels, annotations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

GROUP: Final = "sage.ai"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class ResourceNames:
    """The names of one custom resource, as its CRD declares them."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]


ENGINE: Final = ResourceNames("LLMEngine", "llmengines", "llmengine", ("llme",))
FINETUNE: Final = ResourceNames("FinetuneJob", "finetunejobs", "finetunejob", ("ftj",))
APIKEY: Final = ResourceNames("APIKey", "apikeys", "apikey", ())
ENGINE_KIND: Final = ENGINE.kind
ENGINE_PLURAL: Final = ENGINE.plural
FINETUNE_KIND: Final = FINETUNE.kind
FINETUNE_PLURAL: Final = FINETUNE.plural
APIKEY_PLURAL: Final = APIKEY.plural

CATEGORY: Final = "sage"

MANAGED_BY: Final = "sage-operator"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_ENGINE: Final = f"{GROUP}/engine"
LABEL_FINETUNEJOB: Final = f"{GROUP}/finetunejob"

ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
ANNOTATION_PAUSED_BY: Final = f"{GROUP}/paused-by"
"""On an LLMEngine a FinetuneJob has scaled to zero while it runs: the job's name."""
ANNOTATION_SCALED: Final = f"{GROUP}/scaled"
"""On an LLMEngine the autoscaler manages: its last change and why, as JSON {reason, message,
time}; the operator shows it as the condition `Scaled`."""

IMAGE_USER_ID: Final = 10001
"""The uid (and gid) every SAGE image runs as (its Dockerfile's USER); pods run as it and own
their volumes with it as fsGroup."""
