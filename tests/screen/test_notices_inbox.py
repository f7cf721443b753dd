"""notices.Notices (what was sent and whether it arrived) and inbox.Inbox (what the hub sent), on real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device.inbox import Inbox
from device.screen.notices import Notices
from tests.screen.kiosk import answer_message, setup_body, setup_message

T0 = 1_800_000_000.0


@pytest.fixture
def notices(tmp_path: Path) -> Iterator[Notices]:
    n = Notices(tmp_path / "notices.db")
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    box = Inbox(tmp_path / "inbox.db")
    try:
        yield box
    finally:
        box.close()


def test_a_receipt_marks_only_the_notices_it_names(notices: Notices) -> None:
    notices.saved("P-1", "case", "m1", T0)
    notices.saved("P-1", "vitals", "m2", T0 + 1)
    notices.saved("P-2", "case", "m3", T0 + 2)
    notices.delivered(["m1", "not-a-notice"], T0 + 10)
    assert [(n.message_id, n.delivered_at) for n in notices.for_subject("P-1")] == [("m1", T0 + 10), ("m2", None)]
    assert [n.delivered_at for n in notices.for_subject("P-2")] == [None]
    # A second receipt for the same message keeps the first time.
    notices.delivered(["m1"], T0 + 20)
    assert notices.status("P-1", "m1").delivered_at == T0 + 10  # type: ignore[union-attr]


def test_a_notice_belongs_to_its_patient(notices: Notices) -> None:
    notices.saved("P-1", "case", "m1", T0)
    assert notices.status("P-1", "m1") is not None
    assert notices.status("P-2", "m1") is None
    assert notices.for_subject("P-2") == []
    # Saving the same message again changes nothing (first save wins).
    notices.saved("P-2", "vitals", "m1", T0 + 5)
    (only,) = notices.for_subject("P-1")
    assert (only.what, only.saved_at) == ("case", T0)


def test_forget_shown_removes_only_delivered_notices(notices: Notices) -> None:
    notices.saved("P-1", "case", "delivered", T0)
    notices.saved("P-1", "case", "waiting", T0 + 1)
    notices.saved("P-2", "case", "other", T0 + 2)
    notices.delivered(["delivered", "other"], T0 + 5)
    notices.forget_shown(["delivered", "waiting"])
    assert [n.message_id for n in notices.for_subject("P-1")] == ["waiting"]
    assert [n.message_id for n in notices.for_subject("P-2")] == ["other"]


def test_notices_survive_a_restart(tmp_path: Path) -> None:
    first = Notices(tmp_path / "n.db")
    first.saved("P-1", "case", "m1", T0)
    first.close()
    again = Notices(tmp_path / "n.db")
    try:
        again.delivered(["m1"], T0 + 1)
        assert again.status("P-1", "m1").delivered_at == T0 + 1  # type: ignore[union-attr]
    finally:
        again.close()


def test_the_inbox_keeps_only_the_newest_setup(inbox: Inbox) -> None:
    assert inbox.setup() is None
    assert inbox.store(setup_message(setup_body(version=2)))
    # An older version arriving later (a delayed resend) changes nothing, nor does a repeat of the same version.
    assert not inbox.store(setup_message(setup_body(version=1, pin_required=True)))
    assert not inbox.store(setup_message(setup_body(version=2, pin_required=True)))
    setup = inbox.setup()
    assert setup is not None and (setup.version, setup.pin_required) == (2, False)
    assert inbox.store(setup_message(setup_body(version=3, pin_required=True)))
    setup = inbox.setup()
    assert setup is not None and (setup.version, setup.pin_required) == (3, True)
    # Setups are not answers.
    assert inbox.messages() == []


def test_answers_are_stored_once_per_id_and_read_per_patient(inbox: Inbox) -> None:
    mine, theirs = answer_message("P-1", "Rest."), answer_message("P-2", "Come in.")
    assert inbox.store(mine) and inbox.store(theirs)
    assert not inbox.store(mine)
    assert [m.id for m in inbox.messages("P-1")] == [mine.id]
    assert [m.id for m in inbox.messages()] == [mine.id, theirs.id]


def test_forget_removes_shown_answers_and_a_resend_of_one_stays_out(tmp_path: Path, inbox: Inbox) -> None:
    shown, kept = answer_message("P-1", "Rest."), answer_message("P-2", "Come in.")
    inbox.store(shown)
    inbox.store(kept)
    assert inbox.forget([shown.id]) == 1
    assert [m.id for m in inbox.messages()] == [kept.id]
    # The hub resends what it has no ack for: the shown answer must not come back.
    assert not inbox.store(shown)
    assert inbox.messages("P-1") == []
    # Not even after a restart.
    inbox.close()
    reopened = Inbox(tmp_path / "inbox.db")
    try:
        assert not reopened.store(shown)
        assert [m.id for m in reopened.messages()] == [kept.id]
    finally:
        reopened.close()


def test_forgetting_ids_that_are_not_there_removes_nothing(inbox: Inbox) -> None:
    kept = answer_message("P-2", "Come in.")
    inbox.store(kept)
    assert inbox.forget([]) == 0
    assert inbox.forget(["01900000-0000-7000-8000-000000000000"]) == 0
    assert [m.id for m in inbox.messages()] == [kept.id]
