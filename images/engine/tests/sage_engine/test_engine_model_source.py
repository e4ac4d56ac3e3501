"""Model locations: folders, hf:// ids, hub ids, and models a package ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_engine.backends.model_source import packaged_model, resolve_model


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
