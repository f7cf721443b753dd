"""The FHIR API's queries: a clinic's attributed readings grouped into Observations, its patients, the devices
that measured them, and its cases' ids; the routes (hub/fhir/routes.py) turn what these return into resources.

Searches page by resources, not stored rows: a blood-pressure panel is one Observation made of several
readings, so a page of `_count` Observations never splits one, and the total counts every match. Observations
are ordered and searched by their measurement time on the hub's clock (`observations.measured_ms`), the time
their `effectiveDateTime` shows. Every query takes the clinic; only attributed readings are ever served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from device.protocol.envelope import utc_iso
from hub.db import Connection
from hub.fhir import resources as fr
from hub.fhir.search import DateFilter

OBS_COLUMNS = [
    "message_id", "idx", "kiosk", "code", "value", "unit", "effective", "clock_offset_ms", "device",
    "device_clock_offset_s", "method", "patient_id", "measured_ms",
]  # fmt: skip
_BP = ", ".join(f"'{c}'" for c in fr.BP_PARTS)
# One group per resource, as fr.group_blood_pressure forms them: a panel is the pressures of one message,
# device and time; any other reading is its own. Three keys rather than one concatenated: a CASE must give
# one type on PostgreSQL (text for a panel, an integer index otherwise would not), and both engines group
# NULLs together, so a panel's rows share (device, time, NULL) and any other reading has its own index.
_IS_BP = f"code IN ({_BP})"
_GROUP_BY = (
    f"message_id, CASE WHEN {_IS_BP} THEN device_id END, CASE WHEN {_IS_BP} THEN effective END, "
    f"CASE WHEN {_IS_BP} THEN NULL ELSE idx END"
)
_ATTRIBUTED = "clinic_id = ? AND attribution = 'attributed'"
EXPORT_BATCH = 5000


def _row(values: Sequence[Any]) -> dict[str, Any]:
    r = dict(zip(OBS_COLUMNS, values, strict=True))
    r["device"] = json.loads(r["device"])
    r["corrected"] = utc_iso(datetime.fromtimestamp(r["measured_ms"] / 1000, UTC))
    return r


def message_rows(conn: Connection, clinic_id: str, message_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The clinic's attributed readings of these messages, in message and envelope order (ungrouped)."""
    marks = ",".join("?" * len(message_ids))
    cur = conn.execute(
        f"SELECT {', '.join(OBS_COLUMNS)} FROM observations WHERE {_ATTRIBUTED} AND message_id IN ({marks}) "
        "ORDER BY message_id, idx",
        [clinic_id, *message_ids],
    )
    return [_row(r) for r in cur]


def _observation_groups(
    conn: Connection, clinic_id: str, where: str, params: Sequence[Any], *, count: int, offset: int,
    order: str,
) -> tuple[int, list[list[dict[str, Any]]]]:  # fmt: skip
    """The number of matching Observations, and one page of them (each a group of stored readings)."""
    scope = f"FROM observations WHERE {_ATTRIBUTED}{where} GROUP BY {_GROUP_BY}"
    (total,) = conn.execute(f"SELECT count(*) FROM (SELECT 1 {scope}) AS matches", [clinic_id, *params]).fetchone()
    if count == 0 or offset >= total:
        return total, []
    leaders = conn.execute(
        f"SELECT message_id, min(idx), min(measured_ms) AS at {scope} "
        f"ORDER BY at {order}, message_id {order}, min(idx) {order} LIMIT ? OFFSET ?",
        [clinic_id, *params, count, offset],
    ).fetchall()
    rows = message_rows(conn, clinic_id, sorted({m for m, _, _ in leaders}))
    by_leader = {(g[0]["message_id"], g[0]["idx"]): g for g in fr.group_blood_pressure(rows)}
    return total, [by_leader[(m, i)] for m, i, _ in leaders]


def observation_page(
    conn: Connection,
    clinic_id: str,
    *,
    patient_id: str | None,
    codes: Sequence[str] | None,
    dates: DateFilter,
    count: int,
    offset: int,
    order: str,
) -> tuple[int, list[list[dict[str, Any]]]]:
    """An Observation search: the number of matching Observations, and the page `offset`, `count` of them.

    `codes` None searches every code; an empty list is a search for codes the hub does not serve, and matches
    nothing. `order` is "ASC" or "DESC" (hub.fhir.search.sort), on the measurement time.
    """
    where, params = "", list[Any]()
    if patient_id is not None:
        where += " AND patient_id = ?"
        params.append(patient_id)
    if codes is not None:
        # No code the hub serves: nothing matches. `IN ()` says so on SQLite only (a syntax error on PostgreSQL).
        where += f" AND code IN ({','.join('?' * len(codes))})" if codes else " AND 1 = 0"
        params += codes
    return _observation_groups(
        conn, clinic_id, where + dates.sql, [*params, *dates.params], count=count, offset=offset, order=order
    )


def all_observation_groups(conn: Connection, clinic_id: str) -> Iterator[list[dict[str, Any]]]:
    """Every Observation of the clinic in measurement order, read in batches that end on a whole message.

    Keyset paging on (measured_ms, message_id): a panel's readings share both, so a batch that stops inside
    a message leaves that message to the next batch whole.
    """
    after: tuple[int, str] | None = None
    while True:
        where, params = "", []
        if after is not None:
            where, params = " AND (measured_ms, message_id) > (?, ?)", list(after)
        cur = conn.execute(
            f"SELECT {', '.join(OBS_COLUMNS)} FROM observations WHERE {_ATTRIBUTED}{where} "
            "ORDER BY measured_ms, message_id, idx LIMIT ?",
            [clinic_id, *params, EXPORT_BATCH],
        )
        rows = [_row(r) for r in cur]
        if not rows:
            return
        last = (rows[-1]["measured_ms"], rows[-1]["message_id"])
        if len(rows) == EXPORT_BATCH:
            whole = [r for r in rows if (r["measured_ms"], r["message_id"]) != last]
            if whole:
                rows, last = whole, (whole[-1]["measured_ms"], whole[-1]["message_id"])
            else:  # one message's readings fill the batch: take all of them
                rows = [
                    _row(r) for r in conn.execute(
                        f"SELECT {', '.join(OBS_COLUMNS)} FROM observations WHERE {_ATTRIBUTED} "
                        "AND measured_ms = ? AND message_id = ? ORDER BY idx", [clinic_id, *last],
                    )
                ]  # fmt: skip
        yield from fr.group_blood_pressure(rows)
        after = last


# -- Patient -------------------------------------------------------------------------------------

PATIENT_COLUMNS = ["id", "clinic_id", "code", "name", "birth_date"]


def patients(
    conn: Connection,
    clinic_id: str,
    *,
    patient_id: str | None = None,
    code: str | None = None,
    name_contains: str | None = None,
) -> list[dict[str, Any]]:
    """The clinic's patients matching every filter given (all of them with none), by name then id."""
    where, params = "", list[Any]()
    if patient_id is not None:
        where += " AND id = ?"
        params.append(patient_id)
    if code is not None:
        where += " AND code = ?"
        params.append(code)
    if name_contains is not None:  # case-insensitive, as SQLite's LIKE is (PostgreSQL's is not)
        where += " AND lower(name) LIKE lower(?)"
        params.append(f"%{name_contains}%")
    cur = conn.execute(
        f"SELECT {', '.join(PATIENT_COLUMNS)} FROM patients WHERE clinic_id = ? {where} ORDER BY name, id",
        [clinic_id, *params],
    )
    return [dict(zip(PATIENT_COLUMNS, r, strict=True)) for r in cur]


# -- Device --------------------------------------------------------------------------------------


def devices_and_kiosks(conn: Connection, clinic_id: str, patient_id: str | None) -> list[tuple[dict[str, Any], str]]:
    """Each distinct (device as the kiosk described it, kiosk that forwarded it) of the clinic's attributed
    readings, or of one patient's; a device seen through two kiosks, or described two ways, comes more than once."""
    where, params = _ATTRIBUTED, [clinic_id]
    if patient_id:
        where += " AND patient_id = ?"
        params.append(patient_id)
    return [
        (json.loads(device_json), str(kiosk))
        for device_json, kiosk in conn.execute(f"SELECT DISTINCT device, kiosk FROM observations WHERE {where}", params)
    ]


# -- QuestionnaireResponse (asynchronous cases) ----------------------------------------------------


def case_ids(conn: Connection, clinic_id: str, patient_id: str | None, case_id: str | None = None) -> list[str]:
    """The clinic's cases that have a patient (optionally one patient's, or one case), oldest received first."""
    where, params = "clinic_id = ? AND patient_id IS NOT NULL", [clinic_id]
    if patient_id:
        where += " AND patient_id = ?"
        params.append(patient_id)
    if case_id:
        where += " AND id = ?"
        params.append(case_id)
    return [cid for (cid,) in conn.execute(f"SELECT id FROM cases WHERE {where} ORDER BY received_at, id", params)]
