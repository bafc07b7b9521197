"""One way to show a moment: ``{{ value|timestamp }}``, or ``{{ value|timestamp:"seconds" }}``
where order matters (History).

The server writes the date in the portal's TIME_ZONE with its zone and a relative form
("2026-12-01 14:05 UTC · in 29 min"); js/local-time.js rewrites both in the reader's own time
zone from the ISO datetime, and keeps the relative form current. Without JavaScript the
server's text stands.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def relative(moment: datetime, now: datetime | None = None) -> str:
    """ "in 29 min", "3 min ago", "now"; the same rules as js/local-time.js."""
    seconds = (moment - (now or timezone.now())).total_seconds()
    size = abs(seconds)
    if size < 45:
        return "now"
    if size < 90 * MINUTE:
        amount = f"{max(1, round(size / MINUTE))} min"
    elif size < 36 * HOUR:
        amount = f"{round(size / HOUR)} h"
    else:
        days = round(size / DAY)
        amount = f"{days} day" if days == 1 else f"{days} days"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


@register.filter
def timestamp(value: datetime | None, precision: str = "") -> SafeString | str:
    if value is None:
        return "—"
    local = timezone.localtime(value)
    seconds = precision == "seconds"
    text = format_date(local, "Y-m-d H:i:s T" if seconds else "Y-m-d H:i T")
    return format_html(
        '<time datetime="{}" data-timestamp{}>{}</time>'
        ' <span class="muted" data-relative>· {}</span>',
        local.isoformat(timespec="seconds"),
        " data-seconds" if seconds else "",
        text,
        relative(value),
    )
