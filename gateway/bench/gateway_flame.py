"""Where a profiled server's CPU goes, from py-spy's collapsed stacks (pure).

`py-spy record --format raw` writes one line per distinct stack: its frames root first, joined by
";", then a space and the number of samples that saw it. With `--subprocesses` every stack starts
with a pseudo-frame `process <pid>:"<command line>"` (with `--threads`, `thread (<id>)` too):
those are no function and are skipped. A frame is `<function> (<file>)`, or `(<file>:<line>)`
without `--nolineno`; lines are dropped here, so a function is one row whatever line it was on.

Own time is the share of samples a function was the innermost frame of (where the interpreter
was); inclusive time the share of samples it was anywhere on the stack (counted once per sample
when it recurses). py-spy leaves idle threads out unless asked (`--idle`), so shares are of the
samples where the server was busy, not of wall time.
"""

from __future__ import annotations

import itertools
import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field

from bench.gateway_report import markdown

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True, order=True)
class Frame:
    function: str
    file: str

    @property
    def package(self) -> str:
        """The top-level package or module the file belongs to ("<frozen ...>" as it is)."""
        if self.file.startswith("<"):
            return self.file
        return self.file.split("/", 1)[0].removesuffix(".py")


@dataclass
class Profile:
    samples: int = 0
    own: Counter[Frame] = field(default_factory=Counter)
    inclusive: Counter[Frame] = field(default_factory=Counter)
    packages: Counter[str] = field(default_factory=Counter)
    """Own samples by the package of the innermost frame."""
    callees: dict[Frame, set[Frame]] = field(default_factory=dict)
    """The frames seen right inside each frame."""

    def wrapper(self, frame: Frame) -> bool:
        """No own time and one callee: a frame whose every sample is its callee's too (an entry
        point, `asyncio.run`), so its row would repeat the callee's."""
        return self.own[frame] == 0 and len(self.callees.get(frame, ())) == 1

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0


def parse_frame(text: str) -> Frame | None:
    """A function frame, or None for py-spy's process and thread pseudo-frames."""
    if text.startswith("process ") or text.startswith("thread ("):
        return None
    match = _FRAME.match(text)
    if match is None:  # no "(file)": a native or unknown frame, kept under its own name
        return Frame(text, "")
    return Frame(match["function"], match["file"])


def _split_frames(stack: str) -> list[str]:
    """The frames of one stack; a process pseudo-frame's quoted command line may hold ";"."""
    if stack.startswith("process "):
        end = stack.find('";')
        if end < 0:
            return []  # the process frame alone: no function sampled
        stack = stack[end + 2 :]
    return stack.split(";") if stack else []


def parse_collapsed(text: str) -> Profile:
    """The profile of py-spy's raw output (lines that are not a stack and a count are skipped)."""
    profile = Profile()
    for line in text.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for part in _split_frames(stack) if (frame := parse_frame(part)) is not None]
        profile.samples += count
        if not frames:
            continue
        profile.own[frames[-1]] += count
        profile.packages[frames[-1].package] += count
        for frame in set(frames):
            profile.inclusive[frame] += count
        for caller, callee in itertools.pairwise(frames):
            profile.callees.setdefault(caller, set()).add(callee)
    return profile


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %"


FUNCTION_HEADER = ["function (file)", "own", "inclusive"]


def _function_rows(profile: Profile, frames: list[Frame]) -> list[list[str]]:
    return [
        [
            f"`{frame.function}` ({frame.file})" if frame.file else f"`{frame.function}`",
            _percent(profile.share(profile.own[frame])),
            _percent(profile.share(profile.inclusive[frame])),
        ]
        for frame in frames
    ]


def own_table(profile: Profile, top: int = 10) -> str:
    """The `top` functions by own time, with their inclusive share beside it."""
    frames = [frame for frame, _ in sorted(profile.own.items(), key=lambda item: (-item[1], item[0]))[:top]]
    return markdown(FUNCTION_HEADER, _function_rows(profile, frames))


def inclusive_table(profile: Profile, top: int = 10, *, below: float = 0.9) -> str:
    """The `top` functions by inclusive time, leaving out those on (nearly) every stack (share
    at least `below`) and wrappers (`Profile.wrapper`), which say nothing of their own."""
    ranked = sorted(profile.inclusive.items(), key=lambda item: (-item[1], item[0]))
    frames = [frame for frame, count in ranked if profile.share(count) < below and not profile.wrapper(frame)][:top]
    return markdown(FUNCTION_HEADER, _function_rows(profile, frames))


def package_table(profile: Profile, top: int = 8) -> str:
    """Own time by package, the rest summed in a last row."""
    ranked = sorted(profile.packages.items(), key=lambda item: (-item[1], item[0]))
    rows = [[f"`{name}`", _percent(profile.share(count))] for name, count in ranked[:top]]
    rest = sum(count for _, count in ranked[top:])
    if rest:
        rows.append(["everything else", _percent(profile.share(rest))])
    return markdown(["package", "own"], rows)


@dataclass(frozen=True)
class ProfiledRun:
    """One target under one scenario's load, sampled twice: a flame graph, then the raw stacks."""

    target: str
    scenario: str
    svg: str
    """The flame graph's file name, beside the document."""
    profile: Profile


def section(runs: list[ProfiledRun], about: str, *, top: int = 10) -> str:
    """The document's "Where the CPU goes": how it was sampled (`about`), then per run its flame
    graph and the top functions by own and by inclusive time, and own time by package."""
    parts = ["## Where the CPU goes\n", "\n".join(textwrap.wrap(about, 100)) + "\n"]
    for run in runs:
        parts.append(
            f"### {run.target}, {run.scenario}\n\n"
            f"[Flame graph]({run.svg}) ({run.profile.samples:,} samples in the table's window).\n\n"
            f"Top {top} by own time:\n\n{own_table(run.profile, top)}\n\n"
            f"Top {top} by inclusive time (leaving out wrappers and what is on nearly every stack):\n\n"
            f"{inclusive_table(run.profile, top)}\n\n"
            f"Own time by package:\n\n{package_table(run.profile)}\n"
        )
    return "\n".join(parts)


def svg_name(target: str, scenario: str) -> str:
    """The flame graph's file name: "SAGE", "chat, 64 clients" -> gateway-flame-chat.svg, and
    "SAGE keys+limits" -> gateway-flame-keys-limits-chat.svg."""
    who = re.sub(r"[^a-z0-9]+", "-", target.lower().removeprefix("sage")).strip("-")
    what = re.sub(r"[^a-z0-9]+", "-", scenario.split(",", 1)[0].lower()).strip("-")
    return "gateway-flame-" + "-".join(part for part in (who, what) if part) + ".svg"
