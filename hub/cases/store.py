"""A case's life at the hub: matched to its patient, reviewed, answered, closed, each step with who and when.

States: new -> in_review -> answered -> closed. A case is due the clinic's promised time
after it arrived (`cases.respond_within_hours` in the clinic's triage settings); an overdue
case comes first in the queue, like an escalated alert.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from device.protocol.downlink import CaseAnswerBody
from hub import downlink
from hub.db import Connection
from hub.triage.alerts import clinic_config


class CaseError(ValueError):
    pass


class Answer(BaseModel):
    """What the provider sends back to the kiosk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1, max_length=5000, description="To the patient, in plain words.")
    plan: str = Field(default="", max_length=5000)
    request: Literal["none", "more_info", "live_consult"] = Field(
        default="none", description="Ask the patient for more information, or to see a provider live."
    )


def attribute(conn: Connection) -> int:
    """Give unmatched cases their clinic (from the kiosk) and patient (from the check-in code), when known."""
    rows = conn.execute(
        "SELECT c.id, c.subject, k.clinic_id FROM cases c INDEXED BY cases_unmatched "
        "LEFT JOIN kiosks k ON k.id = c.kiosk WHERE c.patient_id IS NULL"
    ).fetchall()
    matched = 0
    for case_id, subject, clinic_id in rows:
        if clinic_id is None:
            continue
        row = conn.execute("SELECT id FROM patients WHERE clinic_id = ? AND code = ?", (clinic_id, subject)).fetchone()
        conn.execute(
            "UPDATE cases SET clinic_id = ?, patient_id = ? WHERE id = ?", (clinic_id, row[0] if row else None, case_id)
        )
        matched += row is not None
    return matched


CASE_COLUMNS = [
    "id", "kiosk", "subject", "clinic_id", "patient_id", "questionnaire_id", "questionnaire_version", "answers",
    "text", "attachments", "vitals", "created", "received_at", "state", "reviewer", "review_started_at", "answer",
    "answered_by", "answered_at", "delivered_at", "closed_at",
]  # fmt: skip


def _row(r: tuple[Any, ...], respond_within_hours: float) -> dict[str, Any]:
    case = dict(zip(CASE_COLUMNS, r, strict=True))
    for key in ("answers", "attachments", "vitals"):
        case[key] = json.loads(case[key])
    case["answer"] = json.loads(case["answer"]) if case["answer"] else None
    case["due_at"] = case["received_at"] + respond_within_hours * 3600
    return case


def _hours(conn: Connection, clinic_id: str) -> float:
    return clinic_config(conn, clinic_id).cases.respond_within_hours


def get(conn: Connection, clinic_id: str, case_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE id = ? AND clinic_id = ?", (case_id, clinic_id)
    ).fetchone()
    return None if row is None else _row(row, _hours(conn, clinic_id))


def open_cases(conn: Connection, clinic_id: str) -> list[dict[str, Any]]:
    """Cases waiting for a provider (new or in review), with the patient's name."""
    rows = conn.execute(
        f"SELECT {', '.join('c.' + c for c in CASE_COLUMNS)}, p.name, p.code FROM cases c "
        "LEFT JOIN patients p ON p.id = c.patient_id "
        "WHERE c.clinic_id = ? AND c.state IN ('new', 'in_review') ORDER BY c.received_at",
        (clinic_id,),
    ).fetchall()
    hours = _hours(conn, clinic_id)
    return [{**_row(r[: len(CASE_COLUMNS)], hours), "patient_name": r[-2], "patient_code": r[-1]} for r in rows]


def readings(conn: Connection, case: dict[str, Any]) -> list[dict[str, Any]]:
    """The vitals the patient sent with a case, as attributed to the case's patient and clinic, by time then code.

    Only readings attributed to this patient are shown: a reading the kiosk took for someone else (or not yet
    matched) never appears on their case. Each: code, value, unit, effective and the device (parsed).
    """
    if not case["vitals"] or case["patient_id"] is None:
        return []
    marks = ",".join("?" * len(case["vitals"]))
    rows = conn.execute(
        f"SELECT code, value, unit, effective, device FROM observations WHERE message_id IN ({marks}) "
        "AND patient_id = ? AND clinic_id = ? AND attribution = 'attributed' ORDER BY effective, code",
        [*case["vitals"], case["patient_id"], case["clinic_id"]],
    )
    return [{"code": c, "value": v, "unit": u, "effective": e, "device": json.loads(d)} for c, v, u, e, d in rows]


def attachment_status(conn: Connection, attachment_id: str, kiosk: str) -> str | None:
    """A case's photo's status (receiving, complete, corrupt), or None if no chunk of it has arrived yet."""
    row = conn.execute("SELECT status FROM attachments WHERE id = ? AND kiosk = ?", (attachment_id, kiosk)).fetchone()
    return None if row is None else str(row[0])


def _state(conn: Connection, clinic_id: str, case_id: str) -> tuple[str, str | None]:
    row = conn.execute("SELECT state, patient_id FROM cases WHERE id = ? AND clinic_id = ?", (case_id, clinic_id))
    found = row.fetchone()
    if found is None:
        raise LookupError("no such case at this clinic")
    return str(found[0]), found[1]


def start_review(conn: Connection, clinic_id: str, case_id: str, user_id: int, now: float) -> str | None:
    state, patient_id = _state(conn, clinic_id, case_id)
    if state != "new":
        raise CaseError(f"the case is {state.replace('_', ' ')}, not new")
    conn.execute(
        "UPDATE cases SET state = 'in_review', reviewer = ?, review_started_at = ? WHERE id = ?",
        (user_id, now, case_id),
    )
    return patient_id


def answer(conn: Connection, clinic_id: str, case_id: str, reply: Answer, *, user_id: int, now: float) -> str | None:
    state, patient_id = _state(conn, clinic_id, case_id)
    if state not in ("new", "in_review"):
        raise CaseError(f"the case is {state.replace('_', ' ')} already")
    if patient_id is None:
        raise CaseError("the case's check-in code is no patient of this clinic: register or correct it first")
    kiosk, subject = conn.execute("SELECT kiosk, subject FROM cases WHERE id = ?", (case_id,)).fetchone()
    body = CaseAnswerBody(case=case_id, subject=subject, message=reply.message, plan=reply.plan, request=reply.request)
    downlink.enqueue_case_answer(conn, kiosk, body, now)
    conn.execute(
        "UPDATE cases SET state = 'answered', answer = ?, answered_by = ?, answered_at = ?, "
        "reviewer = coalesce(reviewer, ?), review_started_at = coalesce(review_started_at, ?) WHERE id = ?",
        (reply.model_dump_json(), user_id, now, user_id, now, case_id),
    )
    return patient_id


def close(conn: Connection, clinic_id: str, case_id: str, user_id: int, now: float) -> str | None:
    state, patient_id = _state(conn, clinic_id, case_id)
    if state != "answered":
        raise CaseError(f"only an answered case can be closed; this one is {state.replace('_', ' ')}")
    conn.execute(
        "UPDATE cases SET state = 'closed', closed_by = ?, closed_at = ? WHERE id = ?", (user_id, now, case_id)
    )
    return patient_id
