"""The `sage` command line: its parser and the dispatch to each command."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from sage_cli.completion import add_completion_command, bash_script
from sage_cli.keys import OPTION_OF, add_key_commands, create_key
from sage_cli.llm_commands import llm_main
from sage_cli.llm_parser import add_llm_commands
from sage_cli.services import add_service_commands, service_main
from sage_cli.up_command import add_up_commands, down_main, up_main

DESCRIPTION = """SAGE: serve and fine-tune LLMs and embedding models from LLMEngine manifests.

Locally, `sage up` runs the manifests as processes on this machine with the OpenAI-compatible
gateway in front, and `sage llm engine start|list|stop|logs` and `sage llm fine-tune` manage
them. On a cluster the same `sage llm` commands (with --cluster) create LLMEngine and
FinetuneJob objects, which the operator runs; kubectl works as well.

  sage up examples/local/               run two models locally, gateway on :8080
  sage llm engine list                  what runs, and how far it is
  sage llm engine list --cluster        the same on the current kubeconfig context

`sage COMMAND --help` explains each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_up_commands(commands)
    add_llm_commands(commands)
    add_service_commands(commands)
    add_key_commands(commands)
    add_completion_command(commands)
    return parser


def key_main(args: argparse.Namespace) -> int:
    try:
        manifest, key = create_key(args)
    except ValidationError as error:
        for problem in error.errors():
            option = OPTION_OF.get(str(problem["loc"][0]), str(problem["loc"][0]))
            print(f"sage key create: {option}: {problem['msg']}", file=sys.stderr)
        return 2
    except argparse.ArgumentTypeError as error:
        print(f"sage key create: {error}", file=sys.stderr)
        return 2
    print(manifest, end="")
    print(f"The new key (shown only now; the manifest on stdout holds its hash):\n  {key}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        print(bash_script(parser), end="")
        return 0
    if args.command == "key":
        return key_main(args)
    if args.command == "llm":
        return llm_main(args)
    if args.command in {"gateway", "edge"}:
        return service_main(args)
    if args.command == "down":
        return down_main(args)
    return up_main(args)


if __name__ == "__main__":
    sys.exit(main())
