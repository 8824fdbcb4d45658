"""The tracking report of a broadcast, for its dashboard page: `{% load tracking %}{% broadcast_report broadcast %}`."""

from django import template

from autoresponder.charts import BAR, LEFT, LINE, RIGHT, Series, chart_table, series_chart

from .. import stats

register = template.Library()

SERIES = (
    Series("sent", "Sent", BAR, RIGHT),
    Series("unique_opens", "First opens", LINE, LEFT),
    Series("unique_clicks", "First clicks", LINE, LEFT),
    Series("opens", "Opens", LINE, LEFT),
    Series("clicks", "Clicks", LINE, LEFT),
)
CHART_HOURS = 24 * 14


def _hour(moment):
    return moment.strftime("%Y-%m-%d %H:00")


@register.inclusion_tag("campaigns/broadcasts/_tracking_report.html")
def broadcast_report(broadcast):
    figures = stats.broadcast_stats(broadcast)
    rows = stats.timeseries(stats.BROADCAST, broadcast.pk, hours=CHART_HOURS)
    return {
        "figures": figures, "rates": figures["rates"], "links": stats.link_clicks(stats.BROADCAST, broadcast.pk, limit=20),
        "chart": series_chart(rows, x="hour", series=SERIES, x_format=_hour) if rows else None,
        "table": chart_table(rows[::-1], x="hour", series=SERIES, x_format=_hour), "series": SERIES,
        "chart_id": f"broadcast-{broadcast.pk}-activity",
    }


@register.filter
def percent(rate):
    """0.4567 -> '45.7%' ('—' when there is no rate)."""
    return "—" if rate is None else f"{rate * 100:.1f}%"
