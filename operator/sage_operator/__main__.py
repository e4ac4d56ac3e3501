"""`python -m sage_operator`: run the operator (kopf) with settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf
from pydantic import ValidationError

import sage_operator.handlers  # noqa: F401  (registers the handlers)
from sage_operator.settings import ENV_PREFIX, OperatorSettings

DESCRIPTION = """\
SAGE operator: reconciles FinetuneJob resources into training Jobs (with progress, suspend and
preemption of engines), and LLMEngine resources (sage.ai/v1alpha1) into engine Deployments and
Services, keeps them as rendered (server-side apply; drift is undone), loads static LoRA adapters
into ready pods and writes a status that tells the truth (Pending, Deploying, Loading, Ready,
Degraded, Paused, Failed with the reason).

Credentials: $KUBECONFIG, else the pod's service account, else ~/.kube/config.
Settings come from environment variables (command-line options win):
"""


def _settings_help() -> str:
    lines = []
    for name, field in OperatorSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  {ENV_PREFIX}{name.upper():<28} {field.description} (default: {default!r})")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, OperatorSettings]:
    parser = argparse.ArgumentParser(
        prog="python -m sage_operator",
        description=DESCRIPTION + _settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", help="watch this namespace (repeatable)"
    )
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    try:
        settings = OperatorSettings()
    except ValidationError as error:
        parser.error("; ".join(f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in error.errors()))
    if args.namespaces:
        settings = settings.model_copy(update={"namespaces": args.namespaces})
    if args.all_namespaces:
        settings = settings.model_copy(update={"namespaces": []})
    return args, settings


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # One line per HTTP request and per handled watch event drowns what matters (phase changes).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    namespaces = settings.namespaces
    # kopf answers /healthz while its event loop and watches are alive: the liveness probe.
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    # The settings are read once, here, and reach the handlers in kopf's memo; the stop flag ends
    # the operator when it loses its leader Lease.
    stop_flag = asyncio.Event()
    memo = kopf.Memo(settings=settings, stop_flag=stop_flag, lost_leadership=False)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            memo=memo,
            stop_flag=stop_flag,
        )
    )
    if memo.lost_leadership:
        logging.getLogger("sage_operator").error("lost the leader Lease: exiting to come back as a standby")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
