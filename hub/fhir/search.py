"""FHIR search parameters, parsed into what the queries need: pure functions, no database.

Dates follow the FHIR search rules: a value stands for the whole range its precision names (`2026-12`
is all of December), and the prefixes compare that range with the reading's measurement time, which is
to the millisecond: `ge2026-12-07` finds 00:00:00.000 on, `le2026-12-07` up to 23:59:59.999, `eq` (or
no prefix) within the range. A time without a zone is UTC. The time compared is the one the resource
shows, the hub's corrected clock, never the kiosk's raw stamp.
"""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from device.protocol.vitals import VITALS
from hub.fhir import resources as fr

MAX_COUNT = 1000
DEFAULT_COUNT = 100


class SearchError(ValueError):
    """A search the server cannot run: `code` is the OperationOutcome issue type."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


@dataclass(frozen=True)
class DateFilter:
    """`measured_ms` {op} bounds: a SQL condition and its parameters."""

    sql: str
    params: tuple[int, ...]


def date_range(text: str) -> tuple[int, int]:
    """The half-open range [lo, hi) of UTC milliseconds that a FHIR date or dateTime stands for."""
    m = _DATE.fullmatch(text)
    if m is None:
        raise SearchError(
            "invalid", f"date {text!r}: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]"
        )
    try:
        y = int(m["y"])
        if m["mo"] is None:
            start, end = datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
        elif m["d"] is None:
            mo = int(m["mo"])
            start = datetime(y, mo, 1, tzinfo=UTC)
            end = start + timedelta(days=monthrange(y, mo)[1])
        elif m["h"] is None:
            start = datetime(y, int(m["mo"]), int(m["d"]), tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            zone = UTC if m["tz"] in (None, "Z") else datetime.strptime(m["tz"].replace(":", ""), "%z").tzinfo
            start = datetime(y, int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"] or 0), tzinfo=zone)
            if m["f"] is not None:
                start += timedelta(milliseconds=int(m["f"][:3].ljust(3, "0")))
                step = timedelta(milliseconds=1)
            else:
                step = timedelta(seconds=1) if m["s"] is not None else timedelta(minutes=1)
            end = start + step
    except ValueError as exc:
        raise SearchError("invalid", f"date {text!r}: {exc}") from None
    return _ms(start), _ms(end)


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def date_filter(values: list[str]) -> DateFilter:
    """All `date` parameters of a search, ANDed (two make a window: `ge…&lt…`)."""
    sql, params = "", list[int]()
    # Each prefix as one bound on measured_ms, from the [lo, hi) range of the value: gt/sa after the range,
    # ge from its start, lt/eb before it, le before its end; eq within it, ne outside.
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        if value[:2] == "ap":
            raise SearchError("not-supported", "the ap (approximately) prefix is not supported on date")
        lo, hi = date_range(text)
        if prefix == "eq":
            sql += " AND measured_ms >= ? AND measured_ms < ?"
            params += [lo, hi]
        elif prefix == "ne":
            sql += " AND (measured_ms < ? OR measured_ms >= ?)"
            params += [lo, hi]
        else:
            op, at = {"gt": (">=", hi), "sa": (">=", hi), "ge": (">=", lo), "lt": ("<", lo), "eb": ("<", lo),
                      "le": ("<", hi)}[prefix]  # fmt: skip
            sql += f" AND measured_ms {op} ?"
            params.append(at)
    return DateFilter(sql, tuple(params))


# Searchable by code: each Observation code the hub serves, by LOINC. A token is `code`, `http://loinc.org|code`
# or `|code`; several, comma-separated, are ORed. MDC terms are not searchable: the pulse's depends on the device.
def _token_codes() -> dict[str, str]:
    codes = {code: code for code in VITALS if code not in fr.BP_PARTS}  # pressures: components of the panel
    codes[fr.BP_PANEL] = fr.BP_PANEL
    codes["2708-6"] = "59408-5"  # the oxygensat profile's second LOINC code, on every SpO2
    return codes


TOKEN_CODES = _token_codes()


def codes(values: list[str]) -> list[str]:
    """The stored codes an Observation `code` search matches (a BP panel by its own code, 85354-9)."""
    found: set[str] = set()
    for value in values:
        for token in value.split(","):
            system, bar, code = token.rpartition("|")
            if not code:
                raise SearchError("invalid", f"code {token!r}: give a code, as code or system|code")
            if bar and system not in (fr.LOINC, ""):
                raise SearchError("not-supported", f"code system {system!r}: only {fr.LOINC} is searchable")
            if code in TOKEN_CODES:
                found.add(TOKEN_CODES[code])
            if code == fr.BP_PANEL:
                found.update(fr.BP_PARTS)  # the panel is stored as its parts
    return sorted(found)


def count(value: int | None) -> tuple[int, list[str]]:
    """The page size and what the client should be told: above the limit is served at the limit."""
    if value is None:
        return DEFAULT_COUNT, []
    if value < 0:
        raise SearchError("invalid", f"_count {value}: a page size is 0 (the total only) or more")
    if value > MAX_COUNT:
        return MAX_COUNT, [f"_count {value} is above this server's limit: pages hold {MAX_COUNT} resources"]
    return value, []


SORTS = {"date": "ASC", "-date": "DESC"}


def sort(value: str | None) -> str:
    if value is None:
        return "ASC"
    if value not in SORTS:
        raise SearchError("not-supported", f"_sort {value!r}: sortable by date or -date (newest first)")
    return SORTS[value]
