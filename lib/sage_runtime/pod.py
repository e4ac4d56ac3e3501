"""What Kubernetes puts into every container, at fixed places (constants of the platform)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""The pod's ServiceAccount token, cluster CA and namespace."""

TERMINATION_LOG: Final = Path("/dev/termination-log")
"""Created by the kubelet before the container starts; its content becomes the container's
termination message."""
