"""A drill's report as one self-contained HTML page (`keel drill --html PATH`): the verdict,
the faults by kind with their recovery times p50 / p99 drawn as bars, every fault in order,
and every violation with its session, seq and call.

The page is a file a user opens or a CI run keeps, so it carries everything: inline CSS and
SVG, no script at all, nothing fetched. What the report holds came from the system under
test (a violation's detail quotes a log, a fault's detail an error message): every string is
escaped, so it shows as text only, and the page's own Content-Security-Policy allows its one
style block (by hash) and nothing else, should anything ever slip through.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Final

from drill._report import KindFigures, Report

_STYLE: Final = """
:root { --fg: #1d2330; --muted: #6a7282; --line: #e3e6ec; --ok: #1f8a4c; --bad: #c9372c;
  --p50: #2f6fde; --p99: #a9c1ef; --mono: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
body { margin: 0; color: var(--fg); background: #f6f7f9;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
header { padding: 14px 24px; background: #1d2330; color: #fff; }
header h1 { margin: 0; font-size: 18px; }
header p { margin: 4px 0 0; color: #aab2c0; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 32px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 18px; margin-bottom: 14px; }
h2 { margin: 0 0 8px; font-size: 15px; }
.verdict { display: inline-block; padding: 2px 12px; border-radius: 12px; color: #fff;
  font-weight: 700; }
.verdict.ok { background: var(--ok); }
.verdict.bad { background: var(--bad); }
dl { display: flex; flex-wrap: wrap; gap: 6px 28px; margin: 10px 0 0; }
dl div { display: flex; flex-direction: column; }
dt { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
dd { margin: 0; font-variant-numeric: tabular-nums; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono, .mono { font-family: var(--mono); font-size: 12px; overflow-wrap: anywhere; }
td.detail { white-space: pre-wrap; overflow-wrap: anywhere; }
tr.violation td { background: #fff7f6; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  fill: var(--fg); }
svg .p50 { fill: var(--p50); }
svg .p99 { fill: var(--p99); }
svg .axis { stroke: var(--line); }
svg .tick { fill: var(--muted); }
.muted { color: var(--muted); }
"""
_DIGEST: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_POLICY: Final = (
    f"default-src 'none'; style-src 'sha256-{_DIGEST}'; base-uri 'none'; form-action 'none'"
)
# What a table shows for a figure there is none of (an en dash).
_NONE: Final = "\N{EN DASH}"
_LABEL_W: Final = 130
_CHART_W: Final = 760
_ROW_H: Final = 26


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _seconds(value: float | None) -> str:
    return _NONE if value is None else f"{value:.2f} s"


def _recovery_bars(by_kind: dict[str, KindFigures]) -> str:
    """Recovery p99 (light) behind p50 (dark), one row per kind, on one linear scale."""
    longest = max((f.recovery_p99_s or 0.0 for f in by_kind.values()), default=0.0) or 1.0
    width = _CHART_W - _LABEL_W - 90
    rows = []
    for row, (kind, figures) in enumerate(by_kind.items()):
        y = row * _ROW_H
        bars = [f'<text x="0" y="{y + 17}">{_text(kind)}</text>']
        for name, value in (("p99", figures.recovery_p99_s), ("p50", figures.recovery_p50_s)):
            if value is not None:
                length = max(1.0, value / longest * width)
                bars.append(
                    f'<rect class="{name}" data-kind="{_text(kind)}" data-seconds="{value}" '
                    f'x="{_LABEL_W}" y="{y + 5}" width="{length:.1f}" height="16">'
                    f"<title>{_text(kind)} {name} {_seconds(value)}</title></rect>"
                )
        label = f"{_seconds(figures.recovery_p50_s)} / {_seconds(figures.recovery_p99_s)}"
        bars.append(f'<text class="tick" x="{_LABEL_W + width + 6}" y="{y + 17}">{label}</text>')
        rows.append(f'<g class="kind" data-kind="{_text(kind)}">{"".join(bars)}</g>')
    height = len(by_kind) * _ROW_H + 4
    return (
        f'<svg id="recovery-chart" width="{_CHART_W}" height="{height}" role="img" '
        f'aria-label="recovery time p50 and p99 by fault kind">{"".join(rows)}</svg>'
    )


def render_html(report: Report) -> str:
    verdict = (
        '<span class="verdict ok">no violations</span>'
        if report.ok
        else f'<span class="verdict bad">{len(report.violations)} violations</span>'
    )
    statuses = ", ".join(f"{_text(s)} {n}" for s, n in sorted(report.statuses.items()))
    facts = [
        ("faults", f"{len(report.faults)} of {report.faults_asked} asked"),
        ("duration", f"{report.duration_s:.0f} s"),
        ("faults a minute", f"{report.faults_per_minute:.1f}"),
        ("sessions", f"{report.sessions} ({statuses or 'none'})"),
        ("events", str(report.events)),
        ("tool calls", str(report.tool_calls)),
        ("stream reconnects", str(report.stream_reconnects)),
    ]
    kinds = "".join(
        f'<tr data-kind="{_text(kind)}"><td class="mono">{_text(kind)}</td>'
        f'<td class="num">{f.count}</td><td class="num">{_seconds(f.recovery_p50_s)}</td>'
        f'<td class="num">{_seconds(f.recovery_p99_s)}</td>'
        f'<td class="num">{_seconds(f.recovery_max_s)}</td></tr>'
        for kind, f in report.by_kind.items()
    )
    violations = "".join(
        f'<tr class="violation"><td class="mono">{_text(v.kind)}</td>'
        f'<td class="mono">{_text(v.session_id)}</td>'
        f'<td class="num">{_NONE if v.seq is None else v.seq}</td>'
        f'<td class="mono">{_text(v.call_id or _NONE)}</td>'
        f'<td class="detail">{_text(v.detail)}</td></tr>'
        for v in report.violations
    )
    violations = (
        '<table><thead><tr><th>kind</th><th>session</th><th class="num">seq</th><th>call</th>'
        f"<th>detail</th></tr></thead><tbody>{violations}</tbody></table>"
        if violations
        else '<p class="muted">None: every invariant held.</p>'
    )
    started = min((f.at for f in report.faults), default=0.0)
    faults = "".join(
        f'<tr><td class="num">{f.number}</td><td class="num">+{f.at - started:.1f} s</td>'
        f'<td class="mono">{_text(f.kind)}</td><td class="num">{_seconds(f.took_s)}</td>'
        f'<td class="num">{_seconds(f.recovery_s)}</td><td class="detail">{_text(f.detail)}</td>'
        "</tr>"
        for f in report.faults
    )
    notes = "".join(f"<li>{_text(note)}</li>" for note in report.notes)
    if notes:
        notes = f'<ul class="muted" id="notes">{notes}</ul>'
    recovery = (
        _recovery_bars(report.by_kind) if report.by_kind else '<p class="muted">No faults.</p>'
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="referrer" content="no-referrer">
<title>keel drill, seed {report.seed}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
  <h1>keel drill: {verdict}</h1>
  <p>against {_text(report.target)}, seed {report.seed}</p>
</header>
<main>
<section id="summary">
  <dl>{"".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in facts)}</dl>
  {notes}
</section>
<section id="kinds">
  <h2>Faults by kind: recovery, fault to the next committed event (p50 dark, p99 light)</h2>
  {recovery}
  <table>
    <thead><tr><th>kind</th><th class="num">count</th><th class="num">p50</th>
      <th class="num">p99</th><th class="num">max</th></tr></thead>
    <tbody>{kinds}</tbody>
  </table>
</section>
<section id="violations">
  <h2>Violations</h2>
  {violations}
</section>
<section id="faults">
  <h2>Faults in order</h2>
  <table>
    <thead><tr><th class="num">#</th><th class="num">at</th><th>kind</th><th class="num">took</th>
      <th class="num">recovery</th><th>detail</th></tr></thead>
    <tbody>{faults}</tbody>
  </table>
</section>
</main>
</body>
</html>
"""
