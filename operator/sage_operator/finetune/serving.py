"""Which fine-tuned adapters an engine serves, and which claims its pods mount for them (pure).

An adapter `{name, finetuneJob: X}` is served once FinetuneJob X has succeeded, from X's output.
The output claims of every FinetuneJob that will hand an adapter to this engine (referenced in
`spec.adapters`, or naming the engine in `spec.serve.engine`) are mounted from the start, and the
adapters they will add and their LoRA ranks are known from the start too (vLLM reserves room for
them at start-up: `--max-loras`, `--max-lora-rank`), so that the hand-off only loads the adapter
into running pods (the runtime adapter API) and never rolls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sage_api.engine import LLMEngineSpec
from sage_api.finetune import FinetuneMethod, FinetunePhase, LoraConfig


@dataclass(frozen=True)
class FinetuneAdapters:
    claims: tuple[str, ...] = ()
    """Output claims to mount, sorted."""
    sources: dict[str, str] = field(default_factory=dict)
    """Adapter name -> pvc:// location, for adapters whose FinetuneJob succeeded."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Adapter name -> why it is not served yet."""
    incoming: tuple[str, ...] = ()
    """Adapters that FinetuneJobs naming the engine in spec.serve.engine will add on success (named
    after the job), sorted."""
    ranks: tuple[int, ...] = ()
    """LoRA ranks of the FinetuneJobs whose adapters the engine serves or will serve."""


def _lora_rank(job: dict[str, Any]) -> int | None:
    spec = job.get("spec") or {}
    if spec.get("method", FinetuneMethod.LORA.value) != FinetuneMethod.LORA.value:
        return None
    rank = (spec.get("lora") or {}).get("rank")
    return int(rank) if rank is not None else LoraConfig().rank


def _output_claim(job: dict[str, Any]) -> str | None:
    claim = ((job.get("spec") or {}).get("output") or {}).get("claimName")
    return str(claim) if claim else None


def finetune_adapters(engine: str, spec: LLMEngineSpec, finetunejobs: list[dict[str, Any]]) -> FinetuneAdapters:
    """`finetunejobs`: the FinetuneJobs of the engine's namespace, as the API server has them."""
    by_name = {job["metadata"]["name"]: job for job in finetunejobs}
    claims: set[str] = set()
    sources: dict[str, str] = {}
    waiting: dict[str, str] = {}
    incoming: set[str] = set()
    serving: dict[str, dict[str, Any]] = {}
    for job in finetunejobs:
        if ((job.get("spec") or {}).get("serve") or {}).get("engine") == engine:
            incoming.add(job["metadata"]["name"])
            serving[job["metadata"]["name"]] = job
            if claim := _output_claim(job):
                claims.add(claim)
    for adapter in spec.adapters or []:
        if adapter.finetune_job is None:
            continue
        source_job = by_name.get(adapter.finetune_job)
        if source_job is None:
            waiting[adapter.name] = f"FinetuneJob {adapter.finetune_job} does not exist"
            continue
        serving[adapter.finetune_job] = source_job
        if claim := _output_claim(source_job):
            claims.add(claim)
        status = source_job.get("status") or {}
        uri = (status.get("output") or {}).get("uri")
        if status.get("phase") == FinetunePhase.SUCCEEDED.value and uri:
            sources[adapter.name] = str(uri)
        else:
            waiting[adapter.name] = f"FinetuneJob {adapter.finetune_job} is {status.get('phase') or 'Pending'}"
    ranks = sorted(rank for job in serving.values() if (rank := _lora_rank(job)) is not None)
    return FinetuneAdapters(tuple(sorted(claims)), sources, waiting, tuple(sorted(incoming)), tuple(ranks))
