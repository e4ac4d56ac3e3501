"""Model locations: folders, hf:// ids, hub ids, and models a package ships."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sage_engine.backends.model_source import packaged_model, resolve_model
from sage_harness.net import free_port


def test_the_packaged_minilm_stands_in_for_its_hub_id() -> None:
    folder = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert (Path(folder) / "model.safetensors").exists()
    assert resolve_model("hf://sentence-transformers/all-MiniLM-L6-v2") == folder
    assert packaged_model("someone/else") is None


def test_folders_and_missing_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1"):
        resolve_model("nobody/not-cached-anywhere")
    with pytest.raises(ValueError, match="neither a local folder nor a hub id"):
        resolve_model("a/b/c")


def test_a_model_the_hub_cannot_give_fails_at_once_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads are allowed but the hub does not answer (here: a port nothing listens on)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(FileNotFoundError, match="the model hub cannot be reached: give a model folder"):
        resolve_model("nobody/not-cached-anywhere")


def test_a_missing_model_fails_the_load_before_torch_is_imported(tmp_path: Path) -> None:
    """In a process of its own: torch is imported nowhere else there, so its absence afterwards
    shows the load stopped before the backend's import (seconds; a crash loop pays it each time)."""
    missing = tmp_path / "missing"
    script = (
        "import sys\n"
        "from sage_engine.backends import load_backend\n"
        "from sage_engine.settings import EngineSettings\n"
        f"settings = EngineSettings(backend='transformers', model={str(missing)!r})\n"
        "try:\n"
        "    load_backend(settings)\n"
        "except FileNotFoundError as error:\n"
        "    print('refused:', error)\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert f"refused: model folder {missing} does not exist" in done.stdout, done.stdout + done.stderr
    assert "torch imported: False" in done.stdout, done.stdout + done.stderr
