"""visit.Desk and IdlePolicy: one visit at a time, held by its token, ended by idleness only after the grace."""

from __future__ import annotations

from device.screen.visit import Desk, IdlePolicy

T0 = 1_800_000_000.0
POLICY = IdlePolicy(idle_s=120.0, warn_s=30.0, server_grace_s=5.0)


def test_a_visit_is_current_until_idle_plus_grace_has_passed_and_not_a_moment_longer() -> None:
    desk = Desk(POLICY)
    visit = desk.begin("P-1001", "en", T0)
    assert desk.current(visit.token, T0) is visit
    # The screen's own countdown ends at idle_s: the server waits the grace beyond it.
    assert desk.current(visit.token, T0 + POLICY.idle_s) is visit
    assert desk.current(visit.token, T0 + POLICY.idle_s + POLICY.server_grace_s) is visit
    assert desk.current(visit.token, T0 + POLICY.idle_s + POLICY.server_grace_s + 0.01) is None
    assert POLICY.expired(visit, T0 + POLICY.idle_s + POLICY.server_grace_s + 0.01)
    assert not POLICY.expired(visit, T0 + POLICY.idle_s + POLICY.server_grace_s)


def test_activity_moves_the_deadline() -> None:
    desk = Desk(POLICY)
    visit = desk.begin("P-1001", "en", T0)
    visit.touch(T0 + 100)
    assert desk.current(visit.token, T0 + 100 + POLICY.idle_s + POLICY.server_grace_s) is visit
    assert desk.current(visit.token, T0 + 100 + POLICY.idle_s + POLICY.server_grace_s + 1) is None


def test_a_wrong_or_missing_token_gets_nothing() -> None:
    desk = Desk(POLICY)
    visit = desk.begin("P-1001", "en", T0)
    for token in (None, "", "wrong", visit.token[:-1], visit.token + "x", visit.token.upper()):
        assert desk.current(token, T0) is None
    assert desk.current(visit.token, T0) is visit


def test_a_new_visit_replaces_the_old_one_and_its_token() -> None:
    desk = Desk(POLICY)
    first = desk.begin("P-1001", "en", T0)
    second = desk.begin("P-3003", "es", T0 + 1)
    assert first.token != second.token and len(second.token) >= 32
    assert desk.current(first.token, T0 + 1) is None
    assert desk.current(second.token, T0 + 1) is second


def test_end_forgets_the_visit() -> None:
    desk = Desk(POLICY)
    visit = desk.begin("P-1001", "en", T0)
    assert desk.end() is visit
    assert desk.visit is None
    assert desk.current(visit.token, T0) is None
    assert desk.end() is None


def test_a_visit_starts_empty() -> None:
    visit = Desk(POLICY).begin("P-1001", "es", T0)
    assert (visit.subject, visit.language, visit.started, visit.last_active) == ("P-1001", "es", T0, T0)
    assert not visit.readings and not visit.vitals_ids and not visit.answers_seen and not visit.notices_seen
    assert not visit.case.answers and not visit.case.text and not visit.case.photos
