"""A clinic's intake questionnaires: the built-in ones, and the clinic's own immutable versions.

The model and its pure rules (which items show, what is wrong with answers) are part of the wire
contract in `device.protocol.questionnaire`: the kiosk renders the same definition the hub stores.
"""

from __future__ import annotations

from device.intake import built_in, general_intake
from device.protocol.questionnaire import EnableWhen, Item, ItemType, Questionnaire, problems, visible
from hub.db import Connection

__all__ = ["EnableWhen", "Item", "ItemType", "Questionnaire", "lookup", "problems", "store", "visible"]

BUILT_IN = built_in()
GENERAL_INTAKE = general_intake()


def lookup(conn: Connection, clinic_id: str | None, questionnaire_id: str, version: int) -> Questionnaire | None:
    """The clinic's own questionnaire of that id and version, else a built-in one."""
    if clinic_id is not None:
        row = conn.execute(
            "SELECT definition FROM questionnaires WHERE clinic_id = ? AND id = ? AND version = ?",
            (clinic_id, questionnaire_id, version),
        ).fetchone()
        if row is not None:
            return Questionnaire.model_validate_json(row[0])
    return BUILT_IN.get((questionnaire_id, version))


def store(conn: Connection, clinic_id: str, q: Questionnaire, by: str, now: float) -> None:
    """Versions are immutable (cases name the version they answered): a changed questionnaire needs a new one."""
    row = conn.execute(
        "SELECT definition FROM questionnaires WHERE clinic_id = ? AND id = ? AND version = ?",
        (clinic_id, q.id, q.version),
    ).fetchone()
    if row is not None:
        if Questionnaire.model_validate_json(row[0]) != q:
            raise ValueError(
                f"{q.id} version {q.version} exists with other content: give the new one version {q.version + 1}"
            )
        return
    conn.execute(
        "INSERT INTO questionnaires (clinic_id, id, version, definition, created_by, created_at) VALUES (?,?,?,?,?,?)",
        (clinic_id, q.id, q.version, q.model_dump_json(), by, now),
    )
