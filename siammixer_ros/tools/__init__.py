"""Command-line tools (model info, benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_result(out: str | None, result: dict[str, Any], table: str) -> None:
    """Print a tool's markdown table; with ``out``, also write it to OUT.md and the result to OUT.json."""
    if out:
        Path(f"{out}.json").write_text(json.dumps(result, indent=1) + "\n")
        Path(f"{out}.md").write_text(table)
    print(table)
