"""kube-score over everything SAGE puts into a cluster: the chart's default render (its `helm test`
hook left out: a throwaway pod) and every child the operator renders from the manifests in
`examples/`. Each rule SAGE does not follow on purpose is ignored by name below, with its reason;
any other finding, warning or critical, fails `make lint`.

Usage: python -m sage_harness.kube_score   (kube-score and helm come from build-binaries.sh)"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sage_api.engine import LLMEngine
from sage_api.finetune import FinetuneJob
from sage_harness.controlplane import locate_binaries
from sage_harness.helm import Helm, Manifest
from sage_harness.repo import REPO_ROOT
from sage_operator.engine.isolation import (
    render_engine_account,
    render_engine_disruption_budget,
    render_engine_network_policy,
)
from sage_operator.engine.render import render_engine_deployment, render_engine_service
from sage_operator.finetune.render import render_finetune_job, render_progress_rbac
from sage_operator.settings import OperatorSettings

IGNORED_EVERYWHERE = {
    # Images are tagged with their version (never `latest`), and nodes of air-gapped clusters have
    # them preloaded: `Always` would make every pod start depend on a registry.
    "container-image-pull-policy",
    # It wants an ingress and an egress policy for every pod. Ingress: every pod that listens has
    # one (engines from the operator, gateway and operator from the chart; their tests pin them).
    # Egress is the cluster's to restrict: engines download from a model hub or a mirror, and the
    # gateway and operator call an API server, at addresses the chart cannot know.
    "pod-networkpolicy",
    # An ephemeral-storage request makes a pod unschedulable on nodes that report no local storage
    # capacity (kubelet localStorageCapacityIsolation: false, where cAdvisor cannot read the root
    # filesystem). The chart's pods write only to a /tmp emptyDir with a sizeLimit (and logs); a
    # model download on engine and fine-tune pods is as large as the model: no limit fits them all.
    "container-ephemeral-storage-request-and-limit",
}
FLAGS = [
    # CPU requests, no CPU limits: CFS throttling adds its period to every request in flight when
    # it strikes, and an idle core is better lent to a busy engine than left unused.
    "--ignore-container-cpu-limit",
]
IGNORED_ON_ENGINE_AND_RUNNER_PODS = {
    # transformers, tokenizers and torch write caches under $HOME at load time.
    "container-security-context-readonlyrootfilesystem",
}
IGNORED_ON_ENGINE_DEPLOYMENTS = {
    # Replicas are the user's `spec.replicas` (often one GPU each); one replica is a fair choice,
    # and its PodDisruptionBudget (maxUnavailable: 1) never blocks a node drain.
    "deployment-replicas",
    # Replicas are spread over nodes by a topologySpreadConstraint (soft, so that one GPU node can
    # still take them all); kube-score looks only for a podAntiAffinity.
    "deployment-has-host-podantiaffinity",
}
NAMESPACE = "ml"
ENGINE_PEERS = [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}]


def _ignore(manifest: Manifest, tests: set[str]) -> Manifest:
    annotations = manifest["metadata"].setdefault("annotations", {})
    annotations["kube-score/ignore"] = ",".join(sorted(tests))
    return manifest


def _example_documents() -> Iterator[dict[str, Any]]:
    for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                document["metadata"] |= {"namespace": NAMESPACE, "uid": f"uid-{path.stem}", "generation": 1}
                yield document


def operator_children() -> list[Manifest]:
    """What the operator creates for each LLMEngine and FinetuneJob of `examples/`."""
    settings = OperatorSettings.model_validate({"engine_image": "sage/engine:lint", "vllm_image": "vllm/vllm:lint"})
    children: list[Manifest] = []
    for document in _example_documents():
        if document["kind"] == "LLMEngine":
            engine = LLMEngine.model_validate(document)
            children += [
                _ignore(
                    render_engine_deployment(engine, settings),
                    IGNORED_ON_ENGINE_AND_RUNNER_PODS | IGNORED_ON_ENGINE_DEPLOYMENTS,
                ),
                render_engine_service(engine),
                render_engine_account(engine),
                render_engine_network_policy(engine, ENGINE_PEERS),
                render_engine_disruption_budget(engine),
            ]
        elif document["kind"] == "FinetuneJob":
            job = FinetuneJob.model_validate(document)
            runner = render_finetune_job(job, image="sage/finetune:lint")
            children += [_ignore(runner, IGNORED_ON_ENGINE_AND_RUNNER_PODS), *render_progress_rbac(job)]
    return children


def chart_objects(helm: Helm) -> list[Manifest]:
    """The chart's default render, without its hooks (the `helm test` pod)."""
    return [o for o in helm.template() if "helm.sh/hook" not in o["metadata"].get("annotations", {})]


def score(kube_score: Path, objects: list[Manifest]) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="sage-kube-score-") as rendered:
        yaml.safe_dump_all(objects, rendered, sort_keys=False)
        rendered.flush()
        command = [str(kube_score), "score", "--output-format", "ci", "--exit-one-on-warning", *FLAGS]
        for test in sorted(IGNORED_EVERYWHERE):
            command += ["--ignore-test", test]
        return subprocess.run([*command, rendered.name], capture_output=True, text=True, check=False, timeout=120)


def findings(output: str) -> list[str]:
    """The lines of kube-score's `ci` output that are neither passed nor skipped checks."""
    return [line for line in output.splitlines() if line.strip() and not line.startswith(("[OK]", "[SKIPPED]"))]


def main() -> int:
    binaries = locate_binaries()
    objects = chart_objects(Helm(binaries / "helm")) + operator_children()
    result = score(binaries / "kube-score", objects)
    problems = findings(result.stdout)
    if result.returncode != 0 or problems:
        print("\n".join(problems) or result.stderr, file=sys.stderr)
        print(f"kube-score: {len(problems)} finding(s) over {len(objects)} objects", file=sys.stderr)
        return 1
    print(f"kube-score: {len(objects)} objects (the chart's and the operator's), no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
