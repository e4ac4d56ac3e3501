"""What `sage llm ...` does: picks the target, asks it, and prints the answer. Expected failures
(a bad option, an unreachable target, an unknown name) are one line on stderr: exit 2 for the
arguments, 1 for the rest."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from sage_api.engine import EnginePhase
from sage_api.finetune_request import FinetuneRequest, RequestError, check_finetune
from sage_api.paths import state_dir
from sage_api.ports import SagePorts
from sage_cli import daemon
from sage_cli.cluster_target import ClusterTarget
from sage_cli.local_target import LocalTarget
from sage_cli.render import progress_line, table
from sage_cli.requests import engine_manifest, name_from_model
from sage_cli.targets import EngineRow, Target, TargetError
from sage_cli.up_command import start_detached_plane
from sage_local.up import CONTROL_HOST

WAIT_POLL_SECONDS = 0.5
FOLLOW_POLL_SECONDS = 1.0
SETTLED = {EnginePhase.READY.value, EnginePhase.FAILED.value, EnginePhase.PAUSED.value}


def _say(line: str, *, end: str = "\n") -> None:
    print(line, file=sys.stderr, end=end, flush=True)


def wants_cluster(args: argparse.Namespace) -> bool:
    return args.target == "cluster" or any((args.context, args.namespace, args.kubeconfig))


def _autostart(control_port: int) -> str:
    """Starts `sage up --detach` with no engines (engines come from the command that asked)."""
    settings = argparse.Namespace(
        paths=[], filename=[], host="127.0.0.1", port=SagePorts.gateway(), control_port=control_port,
        engine_base_port=SagePorts.local_engine_base(), log_dir=state_dir() / "logs", health_timeout=900.0,
        api_key=None,
    )  # fmt: skip
    try:
        started = start_detached_plane(settings)
    except daemon.DaemonError as error:
        raise TargetError(f"no local control plane was running, and starting one failed: {error.reason}") from None
    return (f"no local control plane was running: started one in the background (pid {started.pid}, "
            f"gateway http://127.0.0.1:{settings.port}/v1; `sage down` stops it)")  # fmt: skip


@contextlib.asynccontextmanager
async def opened(args: argparse.Namespace, *, start_local: bool = False) -> AsyncIterator[Target]:
    """The target the options name, said on stderr; closed on the way out."""
    target: LocalTarget | ClusterTarget
    if wants_cluster(args):
        if args.target == "local":
            raise RequestError("--local cannot go with --context, --namespace or --kubeconfig")
        target = await ClusterTarget.connect(args.context, args.namespace, args.kubeconfig)
    else:
        start = (lambda: _autostart(args.control_port)) if start_local else None
        target = await LocalTarget.connect(f"http://{CONTROL_HOST}:{args.control_port}", start=start)
        if target.started:
            _say(target.started)
    _say(f"target: {target.description}")
    try:
        yield target
    finally:
        await target.aclose()


def finetune_request(args: argparse.Namespace, model: str) -> FinetuneRequest:
    if not args.dataset or not args.output:
        raise RequestError("--dataset and --output are required for a fine-tune")
    name = args.name or name_from_model(args.output)
    local = not wants_cluster(args)
    dataset = str(Path(args.dataset).expanduser().resolve()) if local and "://" not in args.dataset else args.dataset
    output = str(Path(args.output).expanduser().resolve()) if local else args.output
    request = FinetuneRequest(
        name=name, base_model=model, dataset=dataset, output=output, format=args.format, method=args.method,
        rank=args.rank, alpha=args.alpha, epochs=args.epochs, max_steps=args.max_steps,
        learning_rate=args.learning_rate, batch_size=args.batch_size, serve=args.serve,
    )  # fmt: skip
    return check_finetune(request)


def _local_model(model: str) -> str:
    """A model given as an existing local folder is passed on as an absolute path."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


async def _row(target: Target, name: str) -> EngineRow | None:
    return next((row for row in await target.rows() if row.name == name), None)


async def wait_ready(target: Target, name: str, limit_seconds: float) -> int:
    """Until the engine is Ready (0) or Failed (1), saying how long it has been loading."""
    started = time.monotonic()
    interactive = sys.stderr.isatty()
    last_said = 0.0
    while (waited := time.monotonic() - started) < limit_seconds:
        row = await _row(target, name)
        if row is not None and row.phase in SETTLED:
            if interactive:
                _say("\r\033[K", end="")
            if row.phase == EnginePhase.FAILED.value:
                _say(f"engine {name} failed: {row.message}")
                return 1
            _say(f"engine {name} is {row.phase.lower()} ({row.ready} replicas) after {waited:.0f}s")
            return 0
        phase = row.phase if row else "not listed yet"
        if interactive:
            _say(f"\r\033[Kwaiting for {name}: {phase}, {waited:.0f}s", end="")
        elif waited - last_said >= 10:
            _say(f"waiting for {name}: {phase}, {waited:.0f}s")
            last_said = waited
        await asyncio.sleep(WAIT_POLL_SECONDS)
    _say(f"engine {name} not ready after {limit_seconds:.0f}s; `sage llm engine logs {name}` shows why")
    return 1


async def follow_finetune(target: Target, name: str) -> int:
    """Prints the progress bar until the fine-tune ends: 0 on success, 1 on failure."""
    interactive = sys.stdout.isatty()
    shown = ""
    while True:
        state = await target.finetune_state(name)
        line = progress_line(state.progress, state.phase)
        if interactive:
            print(f"\r\033[K{line}", end="", flush=True)
        elif line != shown:
            print(line, flush=True)
        shown = line
        if state.finished:
            if interactive:
                print()
            if state.phase == "Failed":
                print(f"fine-tune {name} failed: {state.message}", flush=True)
                return 1
            where = f"; result: {state.result}" if state.result else ""
            print(f"fine-tune {name} succeeded{where}" + (f" ({state.message})" if state.message else ""), flush=True)
            return 0
        await asyncio.sleep(FOLLOW_POLL_SECONDS)


async def start(args: argparse.Namespace) -> int:
    if args.engine_kind == "finetune":
        return await finetune(args)
    local = not wants_cluster(args)
    manifest = engine_manifest(
        model=_local_model(args.model) if local else args.model, kind=args.engine_kind, backend=args.backend,
        name=args.name, replicas=args.replicas, gpus=args.gpus, served_model_name=args.served_model_name,
    )  # fmt: skip
    async with opened(args, start_local=True) as target:
        print(await target.start_engine(manifest), flush=True)
        if not args.wait:
            return 0
        return await wait_ready(target, manifest["metadata"]["name"], args.timeout)


async def finetune(args: argparse.Namespace) -> int:
    request = finetune_request(args, args.model)
    async with opened(args, start_local=True) as target:
        print(await target.start_finetune(request), flush=True)
        if not getattr(args, "follow", False):
            return 0
        try:
            return await follow_finetune(target, request.name)
        except asyncio.CancelledError:
            _say(f"\nstopped following; the fine-tune goes on (`sage llm engine list` shows it, "
                 f"`sage llm engine stop {request.name}` stops it)")  # fmt: skip
            return 130


async def list_rows(args: argparse.Namespace) -> int:
    async with opened(args) as target:
        rows = await target.rows()
        if not rows:
            _say("no engines or fine-tunes yet: `sage llm engine start MODEL` starts one")
            return 0
        print(table(rows))
        if isinstance(target, LocalTarget) and target.gateway:
            _say(f"gateway: {target.gateway}/v1")
    return 0


async def stop(args: argparse.Namespace) -> int:
    async with opened(args) as target:
        print(await target.stop(args.name, delete=args.delete))
    return 0


async def logs(args: argparse.Namespace) -> int:
    async with opened(args) as target:
        async for line in target.logs(args.name, follow=args.follow):
            print(line, flush=args.follow)
    return 0


COMMANDS = {"start": start, "list": list_rows, "stop": stop, "logs": logs}


def llm_main(args: argparse.Namespace) -> int:
    """`sage llm ...`; `args` from `sage_cli.llm_parser`."""
    command = finetune if args.llm_command == "fine-tune" else COMMANDS[args.engine_command]
    where = "fine-tune" if args.llm_command == "fine-tune" else f"engine {args.engine_command}"
    try:
        return asyncio.run(command(args))
    except RequestError as error:
        print(f"sage llm {where}: {error}", file=sys.stderr)
        return 2
    except TargetError as error:
        print(f"sage llm {where}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
