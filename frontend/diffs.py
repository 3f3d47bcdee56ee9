"""Side-by-side diffs of two configs, line by line over their pretty-printed
JSON, for the version pages.

``difflib.SequenceMatcher`` is cubic in the worst case: on lines that repeat
(a list of 0s and 1s pretty-prints as a few distinct lines, many times) each
of its longest-match searches walks every occurrence of every line, and it
makes one search per matching block. A 4 KB config of that shape took a
worker 20 seconds. So the diff is bounded three ways, each deterministic (a
wall clock would make the same page differ from one request to the next):

- size: configs over ``MAX_DIFF_BYTES`` of compact JSON, or over
  ``MAX_DIFF_LINES`` pretty-printed lines a side, are not diffed at all;
- work: lines both sides share at the start and end are matched without
  difflib, and the matcher's searches are charged their worst-case number of
  steps against a budget (``MAX_DIFF_WORK``). Past half of it, the matcher
  starts again ignoring lines that occur very often (difflib's ``autojunk``:
  in JSON, ``},`` and the like), which is far cheaper and still pairs such
  lines up by position; past the other half, the diff gives up;
- output: runs of unchanged lines longer than ``2 * CONTEXT_LINES + 1`` are
  folded into one row that says how many lines it hides.

A diff that gives up says why (``Diff.too_large``), and the page offers both
versions' JSON instead.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

#: Compact JSON larger than this (either side) is not diffed.
MAX_DIFF_BYTES = 256 * 1024
#: Pretty-printed lines per side, at most.
MAX_DIFF_LINES = 5000
#: Worst-case steps the matcher may take, over both of its attempts; measured
#: at a few tenths of a second on the slowest shapes.
MAX_DIFF_WORK = 2_000_000
#: Unchanged lines shown around each change.
CONTEXT_LINES = 3


def pretty_json(value: Any) -> str:
    """The form configs are shown in: indented, keys in their saved order."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff; a side is None where it has no line.
    A ``fold`` row stands for ``folded`` unchanged lines that are not shown."""

    kind: str  # "same", "changed", "removed", "added" or "fold"
    old_number: int | None
    old_text: str | None
    new_number: int | None
    new_text: str | None
    folded: int = 0


@dataclass(frozen=True)
class Diff:
    rows: list[DiffRow] = field(default_factory=list)
    #: Why there is no diff (the configs are too large to compare here), or None.
    too_large: str | None = None


class _TooMuchWork(Exception):
    pass


class _BoundedMatcher(difflib.SequenceMatcher):
    """A SequenceMatcher that charges each longest-match search its worst case
    (one step per occurrence in ``b`` of each line of ``a`` it looks at) and
    stops once the budget is spent."""

    def __init__(self, a: list[str], b: list[str], budget: int, *, autojunk: bool) -> None:
        super().__init__(None, a, b, autojunk=autojunk)
        self.budget = budget

    def find_longest_match(self, alo: int = 0, ahi: int | None = None, blo: int = 0,
                           bhi: int | None = None) -> Any:
        ahi = len(self.a) if ahi is None else ahi
        bhi = len(self.b) if bhi is None else bhi
        b2j = self.b2j
        self.budget -= (ahi - alo) + sum(len(b2j.get(line, ())) for line in self.a[alo:ahi])
        if self.budget < 0:
            raise _TooMuchWork
        return super().find_longest_match(alo, ahi, blo, bhi)


def _too_large_by_size(value: Any) -> bool:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) > MAX_DIFF_BYTES


def side_by_side(old: Any, new: Any, *, work: int = MAX_DIFF_WORK) -> Diff:
    """The rows of a side-by-side diff of two configs, or why there are none."""
    if _too_large_by_size(old) or _too_large_by_size(new):
        return Diff(too_large=f"one of these configs is over {MAX_DIFF_BYTES // 1024} KB of JSON")
    old_lines = pretty_json(old).splitlines()
    new_lines = pretty_json(new).splitlines()
    if max(len(old_lines), len(new_lines)) > MAX_DIFF_LINES:
        return Diff(too_large=f"one of these configs is over {MAX_DIFF_LINES} lines long")
    # Lines both share at the start and the end need no matcher.
    start = 0
    limit = min(len(old_lines), len(new_lines))
    while start < limit and old_lines[start] == new_lines[start]:
        start += 1
    end = 0
    while (end < limit - start
           and old_lines[len(old_lines) - 1 - end] == new_lines[len(new_lines) - 1 - end]):
        end += 1
    old_middle = old_lines[start:len(old_lines) - end]
    new_middle = new_lines[start:len(new_lines) - end]
    opcodes = None
    for autojunk in (False, True):
        matcher = _BoundedMatcher(old_middle, new_middle, work // 2, autojunk=autojunk)
        try:
            opcodes = matcher.get_opcodes()
            break
        except _TooMuchWork:
            continue
    if opcodes is None:
        return Diff(too_large="their changes are too many and too alike to line up quickly")
    rows: list[DiffRow] = [DiffRow("same", i + 1, old_lines[i], i + 1, new_lines[i])
                           for i in range(start)]
    for tag, i1, i2, j1, j2 in opcodes:
        i1, i2, j1, j2 = i1 + start, i2 + start, j1 + start, j2 + start
        if tag == "equal":
            rows.extend(DiffRow("same", i + 1, old_lines[i], j + 1, new_lines[j])
                        for i, j in zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        for offset in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + offset, j1 + offset
            old_side = (i + 1, old_lines[i]) if i < i2 else (None, None)
            new_side = (j + 1, new_lines[j]) if j < j2 else (None, None)
            if old_side[0] is not None and new_side[0] is not None:
                # Lines paired by position in a replaced block may be equal
                # (frequent lines that autojunk did not match): show them so.
                kind = "same" if old_side[1] == new_side[1] else "changed"
            elif old_side[0] is not None:
                kind = "removed"
            else:
                kind = "added"
            rows.append(DiffRow(kind, old_side[0], old_side[1], new_side[0], new_side[1]))
    first_old, first_new = len(old_lines) - end, len(new_lines) - end
    rows.extend(DiffRow("same", first_old + k + 1, old_lines[first_old + k],
                        first_new + k + 1, new_lines[first_new + k]) for k in range(end))
    return Diff(rows=_fold(rows))


def _fold(rows: list[DiffRow]) -> list[DiffRow]:
    """Keep ``CONTEXT_LINES`` unchanged lines around each change; fold the rest."""
    folded: list[DiffRow] = []
    index = 0
    while index < len(rows):
        if rows[index].kind != "same":
            folded.append(rows[index])
            index += 1
            continue
        run_end = index
        while run_end < len(rows) and rows[run_end].kind == "same":
            run_end += 1
        run = rows[index:run_end]
        keep_before = 0 if index == 0 else CONTEXT_LINES  # context after the change before
        keep_after = 0 if run_end == len(rows) else CONTEXT_LINES  # before the next change
        if all(row.kind == "same" for row in rows):
            keep_before, keep_after = len(run), 0  # nothing changed: show it all
        hidden = len(run) - keep_before - keep_after
        if hidden <= 1:
            folded.extend(run)
        else:
            folded.extend(run[:keep_before])
            folded.append(DiffRow("fold", None, None, None, None, folded=hidden))
            folded.extend(run[len(run) - keep_after:])
        index = run_end
    return folded
