"""Checkpoints: everything a stopped run needs to continue as if it had never stopped.

`<output>/checkpoints/step-N/` holds the trainable weights (`trainable.safetensors`: the LoRA
weights, or every weight for method full), `optimizer.pt`, `scheduler.pt`, `rng.pt` (torch CPU and
CUDA generators) and `trainer_state.json` (step, losses, the run's identity). A checkpoint is
written into a hidden temporary folder and renamed into place, so a folder named step-N is always
complete, even if the pod is killed while writing.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sage_finetune.exits import InvalidInputError

CHECKPOINTS_FOLDER = "checkpoints"
_STEP_FOLDER = re.compile(r"^step-(\d+)$")
_STATE_FILE = "trainer_state.json"


class CheckpointMismatchError(InvalidInputError):
    """The newest checkpoint was written by a run with another model, dataset or settings."""


@dataclass(frozen=True)
class TrainerState:
    """The small, JSON part of a checkpoint."""

    step: int
    identity: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    python_rng: list[Any] = field(default_factory=list)


def checkpoints_dir(output: Path) -> Path:
    return output / CHECKPOINTS_FOLDER


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, folder), oldest first."""
    folder = checkpoints_dir(output)
    if not folder.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _STEP_FOLDER.match(path.name)) and (path / _STATE_FILE).is_file()
    ]
    return sorted(found)


def latest_checkpoint(output: Path) -> Path | None:
    checkpoints = list_checkpoints(output)
    return checkpoints[-1][1] if checkpoints else None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights being trained, by parameter name (shared weights appear once)."""
    return {
        name: parameter.detach().to("cpu").contiguous()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def save_checkpoint(
    output: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainerState,
    *,
    keep: int,
) -> Path:
    """Write checkpoint step-N atomically, delete all but the newest `keep`; return its folder."""
    folder = checkpoints_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{state.step}"
    partial = folder / f".step-{state.step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_file(trainable_state(model), str(partial / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    torch.save(scheduler.state_dict(), partial / "scheduler.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    torch.save(rng, partial / "rng.pt")
    payload = asdict(state) | {"python_rng": _python_rng_to_json(random.getstate())}
    (partial / _STATE_FILE).write_text(json.dumps(payload, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    for _, old in list_checkpoints(output)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_trainer_state(checkpoint: Path) -> TrainerState:
    raw = json.loads((checkpoint / _STATE_FILE).read_text())
    return TrainerState(
        step=int(raw["step"]),
        identity=dict(raw["identity"]),
        losses=[float(x) for x in raw.get("losses", [])],
        python_rng=list(raw.get("python_rng", [])),
    )


def load_checkpoint(
    checkpoint: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    identity: dict[str, Any],
) -> TrainerState:
    """Restore weights, optimiser, scheduler and RNG from `checkpoint`; refuse a foreign one."""
    state = read_trainer_state(checkpoint)
    differences = sorted(
        key for key in identity.keys() | state.identity.keys() if identity.get(key) != state.identity.get(key)
    )
    if differences:
        msg = (
            f"{checkpoint} was written by a different run (differs in: {', '.join(differences)}); "
            "use another --output or delete its checkpoints folder"
        )
        raise CheckpointMismatchError(msg)
    weights = load_file(str(checkpoint / "trainable.safetensors"))
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor.to(parameters[name].device))
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    rng = torch.load(checkpoint / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(rng["cuda"]))
    if state.python_rng:
        random.setstate(_python_rng_from_json(state.python_rng))
    return state


def remove_checkpoints(output: Path) -> None:
    shutil.rmtree(checkpoints_dir(output), ignore_errors=True)


def _python_rng_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(raw: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = raw
    return (version, tuple(internal), gauss)
