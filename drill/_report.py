"""A drill's report: the faults by kind with their recovery times, what the sessions came
to, and every violation with its session, seq and call. Printed, and written as JSON."""

from __future__ import annotations

import math
from collections import Counter

import msgspec

from drill._faults import InjectedFault
from drill._invariants import Violation


class KindFigures(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    # Fault to the next event committed, over the faults that had one.
    recovery_p50_s: float | None
    recovery_p99_s: float | None
    recovery_max_s: float | None


class Report(msgspec.Struct, kw_only=True):
    ok: bool
    seed: int
    target: str
    faults_asked: int
    duration_s: float
    faults_per_minute: float
    by_kind: dict[str, KindFigures]
    sessions: int
    statuses: dict[str, int]
    events: int
    tool_calls: int
    stream_reconnects: int
    violations: list[Violation]
    faults: list[InjectedFault]
    # What the drill could not look at (no hands_dir: no sandbox check), said, not hidden.
    notes: list[str] = []


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least `fraction` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def figures_by_kind(faults: list[InjectedFault]) -> dict[str, KindFigures]:
    counts = Counter(f.kind for f in faults)
    figures: dict[str, KindFigures] = {}
    for kind in sorted(counts):
        times = [f.recovery_s for f in faults if f.kind == kind and f.recovery_s is not None]
        figures[kind] = KindFigures(
            count=counts[kind],
            recovery_p50_s=percentile(times, 0.5),
            recovery_p99_s=percentile(times, 0.99),
            recovery_max_s=max(times) if times else None,
        )
    return figures


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def render(report: Report) -> str:
    lines = [
        f"keel drill against {report.target}, seed {report.seed}: {len(report.faults)} faults"
        f" in {report.duration_s:.0f}s ({report.faults_per_minute:.1f}/min)",
        f"sessions {report.sessions} "
        + " ".join(f"{status}={count}" for status, count in sorted(report.statuses.items()))
        + f"; {report.events} events, {report.tool_calls} tool calls,"
        f" {report.stream_reconnects} stream reconnect attempts",
        "",
        f"{'fault':<14} {'count':>5} {'recovery p50':>13} {'p99':>8} {'max':>8}",
    ]
    for kind, figures in report.by_kind.items():
        lines.append(
            f"{kind:<14} {figures.count:>5} {_seconds(figures.recovery_p50_s):>13}"
            f" {_seconds(figures.recovery_p99_s):>8} {_seconds(figures.recovery_max_s):>8}"
        )
    lines.append("")
    lines.extend(f"note: {note}" for note in report.notes)
    if report.ok:
        lines.append("no violations")
    else:
        lines.append(f"{len(report.violations)} VIOLATIONS")
        for violation in report.violations:
            where = f" seq {violation.seq}" if violation.seq is not None else ""
            call = f" call {violation.call_id}" if violation.call_id else ""
            lines.append(
                f"  {violation.kind}: session {violation.session_id}{where}{call}:"
                f" {violation.detail}"
            )
    return "\n".join(lines)
