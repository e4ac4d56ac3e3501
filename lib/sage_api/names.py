"""Names that must not drift: API group, kinds, plurals, labels, annotations."""

from __future__ import annotations

from typing import Final

GROUP: Final = "sage.ai"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

ENGINE_KIND: Final = "LLMEngine"
ENGINE_PLURAL: Final = "llmengines"
ENGINE_SINGULAR: Final = "llmengine"
ENGINE_SHORT_NAMES: Final = ("llme",)

FINETUNE_KIND: Final = "FinetuneJob"
FINETUNE_PLURAL: Final = "finetunejobs"
FINETUNE_SINGULAR: Final = "finetunejob"
FINETUNE_SHORT_NAMES: Final = ("ftj",)

CATEGORY: Final = "sage"

MANAGED_BY: Final = "sage-operator"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_ENGINE: Final = f"{GROUP}/engine"
LABEL_FINETUNEJOB: Final = f"{GROUP}/finetunejob"

ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
