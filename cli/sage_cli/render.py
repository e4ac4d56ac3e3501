"""What `sage llm ...` prints (pure): the engine table and a fine-tune's progress line."""

from __future__ import annotations

from sage_api.finetune import FinetuneProgress
from sage_cli.targets import EngineRow

COLUMNS = ("NAME", "KIND", "MODEL", "BACKEND", "READY", "PHASE", "PROGRESS")
BAR_WIDTH = 24
MAX_MESSAGE = 160


def duration(seconds: float) -> str:
    """`75` -> `1m15s`; `3700` -> `1h01m`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def progress_cell(progress: FinetuneProgress | None) -> str:
    """`step 30/120 loss 1.234` for the table; `-` without progress."""
    if progress is None or progress.step is None:
        return "-"
    total = f"/{progress.total_steps}" if progress.total_steps else ""
    loss = f" loss {progress.loss:.3f}" if progress.loss is not None else ""
    return f"step {progress.step}{total}{loss}"


def table(rows: list[EngineRow]) -> str:
    """Aligned columns, then each row's message (a failure's reason) indented under it."""
    cells = [COLUMNS] + [
        (row.name, row.kind, row.model, row.backend, row.ready, row.phase, progress_cell(row.progress)) for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(len(COLUMNS))]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        message = rows[index - 1].message if index else ""
        if message:
            first = message.strip().splitlines()[0] if message.strip() else ""
            lines.append(f"    {first[:MAX_MESSAGE]}")
    return "\n".join(lines)


def progress_line(progress: FinetuneProgress | None, phase: str) -> str:
    """`[#######.........]  30% step 30/100 loss 1.234 ETA 2m05s`, as `sage llm fine-tune` follows."""
    if progress is None or progress.step is None:
        return f"{phase}: waiting for the first step ..."
    percent = progress.percent
    if percent is None and progress.total_steps:
        percent = min(100, progress.step * 100 // progress.total_steps)
    filled = (percent or 0) * BAR_WIDTH // 100
    bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent or 0:3d}% " if percent is not None else ""
    parts = [bar + progress_cell(progress)]
    if progress.eta_seconds is not None:
        parts.append(f"ETA {duration(progress.eta_seconds)}")
    return " ".join(parts)
