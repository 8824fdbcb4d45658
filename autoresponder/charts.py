"""
Chart data for the dashboard, in the one shape static/js/charts.js draws.

A view or an overview section builds a chart with series_chart() and the
template writes it with `{{ chart|json_script:"some-id" }}` next to
`<canvas data-chart="some-id">`: the figures travel as JSON, never as inline
script (the CSP forbids that), and json_script escapes them for HTML.

Every chart also needs its figures as text for screen readers and phones
(templates/_chart.html renders a caption and a table of the same rows).
"""

from dataclasses import dataclass

LINE, BAR = "line", "bar"
LEFT, RIGHT = "y", "y1"


@dataclass(frozen=True)
class Series:
    key: str  # the row field
    label: str
    kind: str = LINE  # LINE or BAR
    axis: str = LEFT  # LEFT or RIGHT: a second scale for figures of another size


def series_chart(rows, *, x, series, x_format=str):
    """{"labels": [...], "datasets": [{"label", "kind", "axis", "data"}]} from a list of dict rows."""
    return {
        "labels": [x_format(row[x]) for row in rows],
        "datasets": [
            {"label": s.label, "kind": s.kind, "axis": s.axis, "data": [row[s.key] or 0 for row in rows]}
            for s in series
        ],
    }


def chart_table(rows, *, x, series, x_format=str):
    """The same figures as table rows: [[x, value, value, …], …], in the order given."""
    return [[x_format(row[x]), *(row[s.key] or 0 for s in series)] for row in rows]


def level(rate, *, warn, danger):
    """"ok", "warn" or "danger" for a rate against two thresholds (None when there is no rate)."""
    if rate is None:
        return None
    if rate >= danger:
        return "danger"
    return "warn" if rate >= warn else "ok"
