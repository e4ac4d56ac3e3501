"""Volumes on the node the way a cluster admin provides them: a PersistentVolume (a hostPath
folder: the node is this host) bound to one claim, and the claim a manifest names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from sage_api.names import IMAGE_USER_ID
from sage_harness.kubectl import Kubectl


def own_for_pods(folder: Path) -> None:
    """Hand `folder` (recursively) to the images' user: hostPath volumes keep host ownership,
    and the pods run as IMAGE_USER_ID under the restricted profile."""
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, IMAGE_USER_ID, IMAGE_USER_ID)
    os.chown(folder, IMAGE_USER_ID, IMAGE_USER_ID)


def copy_model(source: Path, folder: Path) -> Path:
    """A copy of a model folder at `folder` (what `huggingface-cli download --local-dir` leaves)."""
    shutil.copytree(source, folder, dirs_exist_ok=True)
    return folder


def provide_claim(kubectl: Kubectl, namespace: str, claim: str, folder: Path, size: str = "1Gi") -> str:
    """A PersistentVolume on `folder` pre-bound to the claim `namespace/claim`, and that claim;
    returns the volume's name. `folder` is handed to the images' user."""
    folder.mkdir(parents=True, exist_ok=True)
    own_for_pods(folder)
    volume = f"{namespace}-{claim}"[:63]
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(folder), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": size}},
            },
        },
    ]
    kubectl.apply(yaml.safe_dump_all(manifests))
    return volume
