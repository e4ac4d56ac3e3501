"""Reading LLMEngine manifests from files and folders, with errors that name the field (pure
parsing; the only I/O is reading the files handed in)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from sage_api import names
from sage_api.engine import LLMEngine

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ManifestError(ValueError):
    """A manifest that cannot run; the message names the file, the object and the field."""


@dataclass(frozen=True)
class LoadedEngine:
    engine: LLMEngine
    source: Path

    @property
    def name(self) -> str:
        return str(self.engine.metadata.get("name", ""))


def expand_environment(text: str, environ: dict[str, str] | os._Environ[str]) -> str:
    """`${VAR}` and `${VAR:-default}` -> their values (local mode only; kubectl does not do this)."""

    def substitute(match: re.Match[str]) -> str:
        value = environ.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        msg = f"${{{match.group(1)}}} is not set and has no default"
        raise ManifestError(msg)

    return _ENV_REFERENCE.sub(substitute, text)


def _field_path(error: ErrorDetails) -> str:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_engines(text: str, source: Path) -> tuple[list[LoadedEngine], list[str]]:
    """The LLMEngines in one YAML stream, and notes about documents that were passed over."""
    engines: list[LoadedEngine] = []
    notes: list[str] = []
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc]
    except yaml.YAMLError as error:
        msg = f"{source}: not valid YAML: {error}"
        raise ManifestError(msg) from error
    for document in documents:
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind != names.ENGINE_KIND:
            notes.append(f"{source}: skipping {kind or 'a document without kind'} (local mode runs LLMEngines)")
            continue
        name = (document.get("metadata") or {}).get("name")
        if not name:
            msg = f"{source}: an LLMEngine has no metadata.name"
            raise ManifestError(msg)
        try:
            engine = LLMEngine.model_validate({k: v for k, v in document.items() if k != "status"})
        except ValidationError as error:
            details = "; ".join(f"{_field_path(e)}: {e['msg']}" for e in error.errors())
            msg = f"{source}: LLMEngine {name}: {details}"
            raise ManifestError(msg) from error
        engines.append(LoadedEngine(engine, source))
    return engines, notes


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"}))
        elif path.exists():
            files.append(path)
        else:
            msg = f"{path}: no such file or folder"
            raise ManifestError(msg)
    if not files:
        msg = "no manifests found (.yaml or .yml files)"
        raise ManifestError(msg)
    return files


def load_engines(
    paths: Iterable[Path], environ: dict[str, str] | os._Environ[str] = os.environ
) -> tuple[list[LoadedEngine], list[str]]:
    """Every LLMEngine in the given files and folders; names must be unique."""
    engines: list[LoadedEngine] = []
    notes: list[str] = []
    for file in manifest_files(paths):
        found, skipped = parse_engines(expand_environment(file.read_text(), environ), file)
        engines.extend(found)
        notes.extend(skipped)
    seen: dict[str, Path] = {}
    for loaded in engines:
        if loaded.name in seen:
            msg = f"LLMEngine {loaded.name} is defined twice ({seen[loaded.name]} and {loaded.source})"
            raise ManifestError(msg)
        seen[loaded.name] = loaded.source
    if not engines:
        msg = "the manifests hold no LLMEngine"
        raise ManifestError(msg)
    return engines, notes
