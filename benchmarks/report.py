"""Result tables of the benchmark scripts, written as markdown and JSON under `benchmarks/results/`.

Results never live only in a log: each script hands its rows here, which writes
`<name>.md` (a table a person reads, quoted by docs/benchmarks.md) and `<name>.json` (the same
rows plus the run's conditions, for tools). Files are written to a temporary name and moved into
place, so an interrupted run leaves the previous results intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Default folder for result files (inside the repository, next to the scripts).
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def format_value(value: Any) -> str:
    """Render one cell: floats with 4 significant decimals, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of `rows` restricted to `columns`, in that order."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(column)) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(
    name: str,
    title: str,
    tables: dict[str, tuple[Sequence[dict[str, Any]], Sequence[str]]],
    conditions: dict[str, Any],
    results_dir: str | Path = RESULTS_DIR,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write `<name>.md` and `<name>.json` into `results_dir`.

    Args:
        name: File stem, e.g. `train_throughput` or `train_throughput_quick`.
        title: Heading of the markdown file.
        tables: Section heading -> (rows, columns shown in markdown). JSON keeps every row field.
        conditions: The run's settings and machine (command line, backbone, threads, ...).
        results_dir: Folder to write into (created if missing).
        notes: Sentences printed under the tables (e.g. whether a target was met).

    Returns:
        The markdown and JSON paths.
    """
    results_dir = Path(results_dir)
    parts = [f"# {title}\n"]
    for heading, (rows, columns) in tables.items():
        parts.append(f"## {heading}\n\n{markdown_table(rows, columns)}")
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes) + "\n")
    parts.append(
        "## Conditions\n\n" + "\n".join(f"- {key}: `{value}`" for key, value in conditions.items()) + "\n"
    )
    md_path = results_dir / f"{name}.md"
    json_path = results_dir / f"{name}.json"
    _write_atomic(md_path, "\n".join(parts))
    payload = {
        "title": title,
        "conditions": conditions,
        "tables": {heading: list(rows) for heading, (rows, _) in tables.items()},
        "notes": list(notes),
    }
    _write_atomic(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    return md_path, json_path
