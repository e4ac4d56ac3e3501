"""infinity-emb, a peer of `make bench-engine`: its optimum (ONNX Runtime) engine serving the
same all-MiniLM-L6-v2 folder, offline.

It lives in a virtual environment of its own under SAGE's user cache folder
(`bench-peers/infinity-emb`), never in the project's: its pins (numpy < 2, transformers, optimum)
clash with ours. `ensure_installed` creates it when asked (`--install-peers`); otherwise the
benchmark runs without the peer and says so. The model folder is copied into the peer's folder
first, because infinity writes its ONNX export beside the model, and the packaged folder must stay
as it is (its files are what SAGE's own export cache is keyed by).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sage_api.paths import cache_dir
from sage_harness.net import free_port
from sage_harness.process import ManagedProcess

# infinity-emb 0.0.78 with the optimum release it was built against: the newest optimum needs
# optimum-onnx, whose pins pip cannot reconcile with infinity's; transformers and the hub client
# of that time (torch as the project's, from pip's cache).
REQUIREMENTS = (
    "infinity-emb[server,optimum]==0.0.78",
    "optimum[onnxruntime]==1.24.0",
    "transformers==4.48.3",
    "huggingface_hub<1",
    "torch==2.15.0",
)
SERVED_NAME = "minilm"


def peer_folder() -> Path:
    return cache_dir() / "bench-peers" / "infinity-emb"


def peer_python() -> Path:
    return peer_folder() / "bin" / "python"


def installed() -> bool:
    return (peer_folder() / ".complete").is_file()


def ensure_installed() -> None:
    """Create the peer's environment (minutes, once per machine)."""
    if installed():
        return
    folder = peer_folder()
    print(f"[bench] installing {REQUIREMENTS[0]} into {folder}", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(peer_python()), "-m", "pip", "install", "--progress-bar", "off", *REQUIREMENTS], check=True)
    (folder / ".complete").touch()


# infinity's optimum engine reads an onnx/model.onnx beside the model, as the hub's
# sentence-transformers repositories ship it (written by optimum's exporter: the transformer's
# last_hidden_state; infinity pools and normalises itself). optimum 1.24 predates torch's dynamo
# default and breaks on it, so its export runs on the TorchScript exporter it was written for.
EXPORT_SCRIPT = """
import functools, sys
import torch
torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
from optimum.exporters.onnx import main_export
main_export(sys.argv[1], output=sys.argv[2], task="feature-extraction", library_name="transformers")
"""


def model_copy(source: Path) -> Path:
    """The peer's own copy of the model folder with optimum's ONNX export in onnx/ (written once)."""
    target = peer_folder() / "models" / source.name
    if not (target / "config.json").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)
    if not (target / "onnx" / "model.onnx").is_file():
        scratch = target / ".onnx-export"
        shutil.rmtree(scratch, ignore_errors=True)
        command = [str(peer_python()), "-c", EXPORT_SCRIPT, str(target), str(scratch)]
        subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        scratch.rename(target / "onnx")
    return target


class InfinityProcess(ManagedProcess):
    """`infinity_emb v2 --engine optimum` on a free loopback port; /health answers once loaded."""

    def __init__(self, model: Path, *, batch_size: int = 64, startup_timeout: float = 600.0) -> None:
        super().__init__("infinity-emb")
        self.model, self.batch_size, self.startup_timeout = model, batch_size, startup_timeout
        self.port = free_port()
        self.env = {"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}

    def command(self) -> list[str]:
        return [
            str(peer_folder() / "bin" / "infinity_emb"),
            "v2",
            "--model-id",
            str(self.model),
            "--served-model-name",
            SERVED_NAME,
            "--engine",
            "optimum",
            "--device",
            "cpu",
            "--batch-size",
            str(self.batch_size),
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--url-prefix",
            "/v1",
        ]

    def ready(self) -> None:
        self.wait_http_ok(f"http://127.0.0.1:{self.port}/health", self.startup_timeout)
