"""A small Dockerfile reader for tests: instructions with line continuations and comments
resolved, build stages, and `${ARG}` substitution in FROM lines. Pure: text in, data out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ARG_REFERENCE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, USER, ...
    arguments: str
    line: int  # 1-based line where the instruction starts


@dataclass
class Stage:
    base: str  # the FROM image with build arguments substituted
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def last(self, keyword: str) -> Instruction | None:
        found = [i for i in self.instructions if i.keyword == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Instructions in order; comments, parser directives and blank lines dropped."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        continuation = stripped.endswith("\\")
        pending.append((stripped[:-1] if continuation else stripped).strip())
        if not continuation:
            keyword, _, arguments = " ".join(part for part in pending if part).partition(" ")
            result.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = []
    if pending:
        keyword, _, arguments = " ".join(pending).partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip(), start))
    return result


def _substitute(value: str, args: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return args.get(name) or match.group(2) or ""

    return _ARG_REFERENCE.sub(replace, value)


def _arg_default(arguments: str) -> tuple[str, str]:
    name, _, default = arguments.partition("=")
    return name.strip(), default.strip().strip('"').strip("'")


def stages(text: str) -> list[Stage]:
    """The build stages; global ARGs (before the first FROM) are substituted into FROM lines."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and not result:
            name, default = _arg_default(instruction.arguments)
            global_args[name] = default
        elif instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(_substitute(words[0], global_args), alias))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def pinned(image: str) -> bool:
    """A tag naming a release (it holds a digit, and is not `latest`) or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def names_registry_host(image: str) -> bool:
    """Whether the reference starts with a registry host (`host.tld/...`, `host:port/...`, localhost)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def copied_sources(stage: Stage) -> set[str]:
    """The build-context paths a stage's COPY instructions take (trailing slashes dropped;
    `COPY --from=...` copies from another stage, not the context, and is left out)."""
    sources: set[str] = set()
    for instruction in stage.all("COPY"):
        words = instruction.arguments.split()
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.update(path.rstrip("/") for path in paths[:-1])
    return sources
