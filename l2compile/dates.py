"""Dates in tables: the forms a date column's format is inferred from, and
the numbers a date becomes. Standard library only: the plan stage prints
the forms into the generated module, which parses dates the same way."""

from __future__ import annotations

import datetime
import math

__all__ = ["DATE_FORMATS", "DATE_PARTS", "any_date_format", "date_parts"]

#: The date forms a date column's format is inferred from, as strptime reads
#: them: common and unambiguous (never day/month against month/day). The
#: first that every training value fits is the column's.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
)
#: The model inputs a date becomes, in order: the year less YEAR_ORIGIN, then
#: the month (January 0) and the day of the week (Monday 0) as sine and
#: cosine, so that December is next to January and Sunday to Monday.
DATE_PARTS = (
    "years_since_2000",
    "month_sin",
    "month_cos",
    "weekday_sin",
    "weekday_cos",
)
#: The year a date's first input counts from: a float16 TFLite file rounds
#: 2013 to 2012 or 2014, a whole year, but 13 to within 0.01.
YEAR_ORIGIN = 2000


def any_date_format(values: set[str]) -> str:
    """The first of DATE_FORMATS that every value fits, else ""."""
    if not values:
        return ""
    sample = sorted(values)
    for form in DATE_FORMATS:
        try:
            for value in sample:
                datetime.datetime.strptime(value, form)
        except ValueError:
            continue
        return form
    return ""


def date_parts(value: str, form: str) -> tuple[float, ...]:
    """A date's model inputs (DATE_PARTS): its year less YEAR_ORIGIN, and its
    month and its day of the week as points on a circle."""
    when = datetime.datetime.strptime(value, form)
    month = 2 * math.pi * (when.month - 1) / 12
    day = 2 * math.pi * when.weekday() / 7
    return (
        float(when.year - YEAR_ORIGIN),
        math.sin(month),
        math.cos(month),
        math.sin(day),
        math.cos(day),
    )
