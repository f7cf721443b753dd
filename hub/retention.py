"""How long the hub keeps what: the `retention` section of hub.yaml, applied by `hub serve` and `hub retention`.

Two kinds of data, two defaults. Transport and security leftovers — dead letters (their raw
bytes may hold a reading), the hub's copy of a case answer after the kiosk has it, chunks of
an upload never completed, ended sessions and login failures — are purged after weeks, since
nobody needs them once handled. The clinical record — readings, cases, photos, consult
records, alerts — is kept until the clinic sets `clinical_records_days`: how long medical
records must be kept is the clinic's legal decision (often 7 to 10 years, longer for
minors), so the hub never chooses it. Even then an open case, an open alert or a live consult
is never purged. The audit log is append-only (migration 5) and outlives everything here:
the clinic archives it, the hub never deletes it.

Purged rows are overwritten, not only unlinked: on SQLite the purge runs with `secure_delete` and
truncates the write-ahead log, so the bytes leave the database file as well as its tables.
PostgreSQL has no such setting: there the server's vacuum reclaims the purged rows' space.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from hub import audit
from hub.db import Connection, engine_of, immediate

DAY_S = 86_400.0


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dead_letters_days: int = Field(default=30, ge=1, le=3650)
    delivered_messages_days: int = Field(
        default=30, ge=1, le=3650, description="the hub's copy of a case answer, after the kiosk confirmed it"
    )
    incomplete_uploads_days: int = Field(default=30, ge=1, le=3650)
    sessions_days: int = Field(default=90, ge=1, le=3650, description="ended sessions and failed logins")
    clinical_records_days: int | None = Field(
        default=None,
        ge=365,
        le=36500,
        description="readings, cases, photos, consult records and alerts; unset: kept (the clinic's decision)",
    )


@dataclass(frozen=True)
class Rule:
    table: str
    what: str
    where: str  # rows older than the cutoff `:cutoff`, and done with; `{case_attachments}`: see _CASE_ATTACHMENTS

    def sql(self, engine: str) -> str:
        """The condition for `engine`, each `:cutoff` a `?` placeholder (the parameters: `cutoff` that many times)."""
        return self.where.replace("{case_attachments}", _CASE_ATTACHMENTS[engine]).replace(":cutoff", "?")


# A case's attachment ids (a JSON array of text) as rows with a `value` column: JSON is where the engines differ.
_CASE_ATTACHMENTS = {
    "sqlite": "json_each(cases.attachments)",
    "postgresql": "jsonb_array_elements_text(cases.attachments::jsonb)",
}


TRANSPORT: dict[str, list[Rule]] = {
    "dead_letters_days": [Rule("dead_letters", "dead letters", "last_seen < :cutoff")],
    "delivered_messages_days": [
        Rule("downlink", "delivered messages", "delivered_at IS NOT NULL AND delivered_at < :cutoff")
    ],
    "incomplete_uploads_days": [
        Rule(
            "attachment_chunks",
            "chunks of uploads never completed",
            "attachment IN (SELECT id FROM attachments WHERE status != 'complete' AND first_chunk_at < :cutoff)",
        ),
    ],
    "sessions_days": [
        Rule("sessions", "ended sessions", "ended_at IS NOT NULL AND ended_at < :cutoff"),
        Rule("login_failures", "failed logins", "at < :cutoff"),
    ],
}

# Children before parents, so a rule's subquery still sees the rows it hangs on.
CLINICAL: list[Rule] = [
    Rule("observations", "readings", "message_id IN (SELECT id FROM messages WHERE committed_at < :cutoff)"),
    Rule(
        "downlink",
        "messages of purged cases",
        "case_id IN (SELECT id FROM cases WHERE state = 'closed' AND closed_at < :cutoff)",
    ),
    Rule(
        "attachments",
        "photos",
        "first_chunk_at < :cutoff AND id NOT IN "
        "(SELECT value FROM cases, {case_attachments} WHERE NOT (state = 'closed' AND closed_at < :cutoff))",
    ),
    Rule("cases", "closed cases", "state = 'closed' AND closed_at < :cutoff"),
    Rule("consults", "consult records", "state = 'ended' AND ended_at < :cutoff"),
    Rule(
        "alert_events",
        "alert history",
        "alert_id IN (SELECT id FROM alerts WHERE state = 'resolved' AND resolved_at < :cutoff)",
    ),
    Rule("alerts", "resolved alerts", "state = 'resolved' AND resolved_at < :cutoff"),
    Rule("messages", "received messages", "committed_at < :cutoff"),
]


def plan(policy: Retention, now: float) -> list[tuple[Rule, float]]:
    """Each rule with its cutoff time."""
    rules: list[tuple[Rule, float]] = []
    for setting, settings_rules in TRANSPORT.items():
        days: int = getattr(policy, setting)
        rules += [(rule, now - days * DAY_S) for rule in settings_rules]
    if policy.clinical_records_days is not None:
        rules += [(rule, now - policy.clinical_records_days * DAY_S) for rule in CLINICAL]
    return rules


def apply(conn: Connection, policy: Retention, now: float, *, dry_run: bool = False) -> dict[str, int]:
    """Purge what the policy says is past keeping; return how many rows of each kind (or would be, on a dry run).

    One transaction: a crash leaves all or nothing. The counts, never the contents, go to the audit log.
    """
    counts: dict[str, int] = {}
    engine = engine_of(conn)
    sqlite = engine == "sqlite"  # secure_delete and the WAL checkpoint are SQLite's own (PRAGMAs)
    if sqlite:
        conn.execute("PRAGMA secure_delete = ON")
    try:
        with immediate(conn):
            for rule, cutoff in plan(policy, now):
                verb = "SELECT count(*) FROM" if dry_run else "DELETE FROM"
                where = rule.sql(engine)
                cursor = conn.execute(f"{verb} {rule.table} WHERE {where}", [cutoff] * where.count("?"))
                removed = cursor.fetchone()[0] if dry_run else cursor.rowcount
                counts[rule.what] = counts.get(rule.what, 0) + removed
            if not dry_run and any(counts.values()):
                purged = {k: v for k, v in counts.items() if v}
                audit.record(conn, audit.Actor("system", None), "retention.purge", now, detail=purged)
    finally:
        if sqlite:
            conn.execute("PRAGMA secure_delete = OFF")
    if sqlite and not dry_run and any(counts.values()):
        # The old pages also sit in the write-ahead log until a checkpoint copies and truncates it.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts
