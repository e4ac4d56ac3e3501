"""The SAGE gateway: OpenAI-compatible `/v1/*` (and the Anthropic Messages API) routed by model
name to ready engine replicas, discovered through the Kubernetes API or a static list."""

from sage_gateway.app import create_app
from sage_gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
