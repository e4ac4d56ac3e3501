"""README.md's "Install on a cluster" block run command by command on the real node, as a user
pastes it (kubectl and helm on PATH, KUBECONFIG at the node's cluster): `make images` builds what
the node runs, the chart installs (the session's `sage_release` ran that line), the MiniLM example
becomes Ready with the weights its image ships, and the gateway answers through
`kubectl port-forward svc/sage-gateway` — curl, then the official `openai` client."""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterator

import openai
import pytest

from sage_harness.cluster_checks import namespace_report, port_forward
from sage_harness.kubectl import Kubectl
from sage_harness.models import minilm_folder
from sage_harness.node_images import VERSION, buildah_image_id, record
from sage_harness.readme import section_commands
from sage_harness.user_shell import UserShell
from sage_testing.node_fixtures import SHIPPED_IMAGES, SageRelease

SECTION = "Install on a cluster"
MINILM = "examples/embedding-minilm.yaml"


@pytest.fixture
def readme_session(sage_release: SageRelease, node_kubectl: Kubectl) -> Iterator[list[subprocess.Popen[str]]]:
    """The background jobs (`... &`) the block starts, stopped afterwards; the example it applied
    deleted (its pods gone), so the node's CPU is free for the next test."""
    background: list[subprocess.Popen[str]] = []
    yield background
    for job in background:
        job.terminate()
        job.communicate(timeout=10)
    sage_release.shell.run(f"kubectl delete -f {MINILM} --ignore-not-found --wait=true")
    node_kubectl.run("wait", "--for=delete", "pod", "-l", "sage.ai/engine=minilm", "--timeout=120s", check=False)


def run_block(shell: UserShell, commands: list[str], skip: str, background: list[subprocess.Popen[str]]) -> list[str]:
    """Each command in turn (stopping at the first failure); the outputs, in order."""
    outputs: list[str] = []
    for line in commands:
        if line == skip:
            outputs.append("")
            continue
        if line.endswith("&"):
            job = subprocess.Popen(
                ["bash", "-c", line.removesuffix("&")],
                env=shell.environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            background.append(job)
            outputs.append("")
            continue
        started = time.monotonic()
        result = shell.run(line)
        failed = f"README command failed ({result.returncode}): {line}\n{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, failed
        record("readme-command", time.monotonic() - started, command=line[:60])
        outputs.append(result.stdout + result.stderr)
    return outputs


def test_the_readme_cluster_section_works_command_by_command(
    sage_release: SageRelease, node_kubectl: Kubectl, readme_session: list[subprocess.Popen[str]]
) -> None:
    commands = section_commands(SECTION)
    assert sage_release.install_command in commands  # the session's install ran that very line
    shipped = {name: buildah_image_id(f"localhost/sage/{name}:{VERSION}") for name in SHIPPED_IMAGES}

    started = time.monotonic()  # the block's apply -> Ready -> the first routed request
    try:
        ran = run_block(sage_release.shell, commands, sage_release.install_command, readme_session)
        outputs = dict(zip(commands, ran, strict=True))
    except AssertionError as failure:
        pytest.fail(f"{failure}\n{namespace_report(node_kubectl, 'default')}")
    record("readme-block", time.monotonic() - started)

    # `make images` built every image the node runs (and the vLLM one is named as Docker-only).
    (make_images,) = [line for line in commands if line.startswith("make images")]
    assert f"{len(SHIPPED_IMAGES)} image(s) built" in outputs[make_images], outputs[make_images]
    assert "sage/vllm:" in outputs[make_images]
    rebuilt = {name: buildah_image_id(f"localhost/sage/{name}:{VERSION}") for name in SHIPPED_IMAGES}
    assert rebuilt == shipped, "make images built something other than what the node runs"

    (get,) = [line for line in commands if line.startswith("kubectl get llmengines")]
    header, *rows = outputs[get].splitlines()
    assert header.split()[:6] == ["NAME", "MODEL", "KIND", "BACKEND", "READY", "PHASE"]
    (minilm,) = [row.split() for row in rows if row.startswith("minilm ")]
    model, kind, backend, ready, phase = minilm[1:6]
    assert (model, kind, backend) == ("sentence-transformers/all-MiniLM-L6-v2", "embedding", "sentence-transformers")
    assert (ready, phase) == ("1/1", "Ready")
    (explain,) = [line for line in commands if line.startswith("kubectl explain")]
    assert "engineKind" in outputs[explain]

    models_call, embeddings_call = [line for line in commands if line.startswith("curl")]
    listed = {model["id"] for model in json.loads(outputs[models_call])["data"]}
    assert {"minilm", "all-minilm-l6-v2"} <= listed
    (vector,) = [item["embedding"] for item in json.loads(outputs[embeddings_call])["data"]]
    assert len(vector) == 384
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)  # normalised

    # The example the block applied, read through the official client: the vectors are those of
    # the same model encoding in this process.
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415 (heavy; only this test)

    texts = ["SAGE runs on a real node", "an unrelated sentence about cooking"]
    with port_forward(node_kubectl, sage_release.namespace, "svc/sage-gateway", 80) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0)
        answer = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    reference = SentenceTransformer(str(minilm_folder()), device="cpu").encode(texts, normalize_embeddings=True)
    assert [item.index for item in answer.data] == [0, 1]
    for item, expected in zip(answer.data, reference, strict=True):
        cosine = sum(a * float(b) for a, b in zip(item.embedding, expected, strict=True))
        assert cosine > 0.9999
    assert answer.usage.prompt_tokens > 0
