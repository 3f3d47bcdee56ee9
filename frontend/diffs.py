"""Side-by-side diffs of two configs, line by line over their pretty-printed
JSON, for the version pages."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any


def pretty_json(value: Any) -> str:
    """The form configs are shown in: indented, keys in their saved order."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff; a side is None where it has no line."""

    kind: str  # "same", "changed", "removed" or "added"
    old_number: int | None
    old_text: str | None
    new_number: int | None
    new_text: str | None


def side_by_side(old: Any, new: Any) -> list[DiffRow]:
    old_lines = pretty_json(old).splitlines()
    new_lines = pretty_json(new).splitlines()
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(i2 - i1):
                rows.append(DiffRow("same", i1 + offset + 1, old_lines[i1 + offset],
                                    j1 + offset + 1, new_lines[j1 + offset]))
            continue
        for offset in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + offset, j1 + offset
            old_side = (i + 1, old_lines[i]) if i < i2 else (None, None)
            new_side = (j + 1, new_lines[j]) if j < j2 else (None, None)
            if old_side[0] is not None and new_side[0] is not None:
                kind = "changed"
            elif old_side[0] is not None:
                kind = "removed"
            else:
                kind = "added"
            rows.append(DiffRow(kind, old_side[0], old_side[1], new_side[0], new_side[1]))
    return rows
