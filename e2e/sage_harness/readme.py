"""The README's shell blocks as a user copies them: the commands of one section's first ```bash
block, comments stripped, one entry per command line."""

from __future__ import annotations

import re
from pathlib import Path

from sage_harness.repo import REPO_ROOT

README = REPO_ROOT / "README.md"


def section_block(title: str, language: str = "bash", readme: Path = README) -> str:
    """The first ```language block under the `## title` heading, as written."""
    text = readme.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        msg = f"README.md has no '## {title}' section"
        raise ValueError(msg)
    block = re.search(rf"```{re.escape(language)}\n(.*?)```", match.group(1), flags=re.DOTALL)
    if block is None:
        msg = f"README.md's '{title}' section has no {language} block"
        raise ValueError(msg)
    return block.group(1)


def section_commands(title: str, readme: Path = README) -> list[str]:
    """The command lines of the first ```bash block under the `## title` heading; a line ending
    in `\\` continues on the next."""
    commands: list[str] = []
    pending = ""
    for raw in section_block(title, "bash", readme).splitlines():
        line = strip_comment(raw).rstrip()
        if not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append((pending + line.strip()).strip())
        pending = ""
    return commands


def strip_comment(line: str) -> str:
    """`line` without its shell comment: a `#` at the start or after a blank, outside quotes."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line
