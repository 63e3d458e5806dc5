"""Timing, result rows and the printed table, shared by every section."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The package, the demo shop and these benchmarks from this checkout, whatever else is installed:
# every section imports this module before them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass
class Row:
    """One line of a section's table: named measurements, and the target it is held to (if any)."""

    case: str
    values: dict[str, float | str | None]
    target: str = ""
    met: bool | None = None  # None: no target, or not measured
    measured: str = ""  # the number the target is judged on, for the summary


@dataclass
class Section:
    title: str
    unit: str
    rows: list[Row] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # what the rows were computed from, for the JSON

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "skipped": self.skipped,
            "notes": self.notes,
            "rows": [
                {"case": r.case, "values": r.values, "target": r.target, "met": r.met, "measured": r.measured}
                for r in self.rows
            ],
            "raw": self.raw,
        }


def per_call(func: Callable[[], object], *, min_time: float, repeat: int) -> float:
    """Seconds per call: calls batched to last `min_time` each, best of `repeat` batches."""
    return per_call_each({"func": func}, min_time=min_time, repeat=repeat)["func"]


def per_call_each(funcs: dict[str, Callable[[], object]], *, min_time: float, repeat: int) -> dict[str, float]:
    """Seconds per call of each function, measured side by side: calls batched to last `min_time`
    each, best of `repeat` batches, the functions' batches taking turns so that drift in the
    machine's speed hits all of them alike."""
    numbers: dict[str, int] = {}
    for name, func in funcs.items():
        number = 1
        while True:
            start = time.perf_counter()
            for _ in range(number):
                func()
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
            number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.1))
        numbers[name] = number
    best = {name: float("inf") for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            start = time.perf_counter()
            for _ in range(numbers[name]):
                func()
            best[name] = min(best[name], (time.perf_counter() - start) / numbers[name])
    return best


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def paired_ratios(tops: Iterable[float | None], bottoms: Iterable[float | None]) -> list[float]:
    """Each pair's ratio: two things measured side by side, round after round, so that a drift in
    the machine's speed between rounds cancels out of each ratio."""
    shares = (ratio(top, bottom) for top, bottom in zip(tops, bottoms, strict=True))
    return [share for share in shares if share is not None]


def median_ratio(tops: Iterable[float | None], bottoms: Iterable[float | None]) -> float | None:
    """The median of each pair's ratio (`paired_ratios`)."""
    found = paired_ratios(tops, bottoms)
    return statistics.median(found) if found else None


def median_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """An interval that holds the median of what `values` sample with at least `confidence`,
    whatever their distribution: the k-th smallest and k-th largest value, for the largest k such
    that fewer than k of n values fall below the median with probability at most (1 - confidence)
    / 2 (a binomial count). None when there are too few values for that confidence."""
    ordered = sorted(values)
    n = len(ordered)
    k, below = 0, 0.0
    while k < n and below + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        below += math.comb(n, k) / 2**n
        k += 1
    return None if k == 0 else (ordered[k - 1], ordered[n - k])


def verdict(met: bool | None) -> str:
    return "" if met is None else "met" if met else "NOT MET"


def fmt(value: float | str | None) -> str:
    if value is None:
        return "n/m"  # not measured
    if isinstance(value, str):
        return value
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(section: Section) -> str:
    """The section as a Markdown table (readable in a terminal and pasted as is into the README)."""
    lines = [f"### {section.title}", ""]
    if section.skipped:
        return "\n".join([*lines, f"Skipped: {section.skipped}", ""])
    columns: list[str] = []
    for row in section.rows:
        columns += [c for c in row.values if c not in columns]
    with_target = any(row.target for row in section.rows)
    header = ["case", *columns, *(["target", "result"] if with_target else [])]
    lines.append("| " + " | ".join(header) + " |")
    lines.append(
        "| " + " | ".join(["---", *("---:" for _ in columns), *(["---", "---"] if with_target else [])]) + " |"
    )
    for row in section.rows:
        cells = [row.case, *(fmt(row.values.get(c)) for c in columns)]
        if with_target:
            cells += [row.target, (verdict(row.met) or "n/m") if row.target else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if section.unit:
        lines.append(f"Unit: {section.unit}; n/m: not measured.")
    lines += [f"{note}" for note in section.notes]
    lines.append("")
    return "\n".join(lines)


def run_alone(
    doc: str | None,
    measure: Callable[..., Section],
    smoke: str,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """`python benchmarks/NAME.py [--smoke]`: one section, printed as its table. `options` adds the
    section's own arguments, which `measure` receives by name."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    if options is not None:
        options(parser)
    arguments = vars(parser.parse_args())
    # The demo shop refuses to start without a secret; any value does for measuring.
    os.environ.setdefault("EDGE_PERSONALIZE_SECRET", "benchmark-secret-0123456789abcdef")
    print(table(measure(**arguments)))
