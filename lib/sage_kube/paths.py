"""URL paths of Kubernetes resources (pure)."""

from __future__ import annotations


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """`("apps/v1", "deployments", "ml", "qwen")` -> `/apis/apps/v1/namespaces/ml/deployments/qwen`.

    The core group ("v1") lives under /api, every other group under /apis.
    """
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [root]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
        if subresource:
            parts.append(subresource)
    return "/".join(parts)
