"""Where Kubernetes mounts a pod's ServiceAccount credentials (a constant of the platform)."""

from pathlib import Path

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
