"""A small, typed asyncio client for the Kubernetes API (aiohttp), shared by the operator and the
gateway: kubeconfig / in-cluster credentials, CRUD with server-side apply, and list+watch.

It is the only code in SAGE that speaks HTTP to the API server.
"""

from sage_kube.client import KubeClient
from sage_kube.config import KubeConfig, load_config
from sage_kube.errors import ApiError, Conflict, Gone, NotFound, Unreachable
from sage_kube.paths import resource_path

__all__ = [
    "ApiError",
    "Conflict",
    "Gone",
    "KubeClient",
    "KubeConfig",
    "NotFound",
    "Unreachable",
    "load_config",
    "resource_path",
]
