"""sage-edge: a thin aggregator shell that mounts the SAGE gateway (at `/` or under a prefix) and
answers its own health checks. It holds no LLM logic."""

from sage_edge.app import create_app

__all__ = ["create_app"]
