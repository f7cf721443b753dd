"""checkin.Gate: codes against the clinic's roster, PINs verified offline, a lock after repeated wrong PINs."""

from __future__ import annotations

import pytest

from device.screen.checkin import LOCK_S, MAX_PIN_FAILURES, Gate, normalise_code
from tests.screen.kiosk import NO_PIN, OTHER, PIN, WITH_PIN, setup_body

T0 = 1_800_000_000.0


@pytest.mark.parametrize("typed", ["", "   ", "P 1001/", "P-1001!", "ü-1", "x" * 65, "<script>"])
def test_a_code_that_cannot_be_a_check_in_code_is_bad_with_or_without_a_roster(typed: str) -> None:
    for setup in (None, setup_body()):
        result = Gate().check(setup, typed, None, T0)
        assert result.outcome == "bad_code" and result.code == ""


def test_a_well_formed_code_that_the_roster_does_not_name_is_unknown() -> None:
    result = Gate().check(setup_body(), "P-9999", None, T0)
    assert result.outcome == "unknown_code"
    # Even with a PIN: an unknown code never reaches a PIN check.
    assert Gate().check(setup_body(), "P-9999", PIN, T0).outcome == "unknown_code"


@pytest.mark.parametrize("typed", ["P-9999", "anything.at:all_1", "n100"])
def test_before_any_roster_every_well_formed_code_is_accepted_as_typed(typed: str) -> None:
    result = Gate().check(None, typed, None, T0)
    assert (result.outcome, result.code) == ("ok", typed)


def test_a_patient_without_a_pin_checks_in_with_the_code_alone() -> None:
    result = Gate().check(setup_body(), NO_PIN, None, T0)
    assert (result.outcome, result.code) == ("ok", NO_PIN)


def test_a_patient_with_a_pin_is_asked_for_it_then_admitted_with_the_right_one() -> None:
    gate, setup = Gate(), setup_body()
    assert gate.check(setup, WITH_PIN, None, T0).outcome == "need_pin"
    result = gate.check(setup, WITH_PIN, PIN, T0)
    assert (result.outcome, result.code) == ("ok", WITH_PIN)


def test_a_clinic_that_requires_pins_asks_every_patient_and_one_without_a_pin_on_file_cannot_get_in() -> None:
    gate, setup = Gate(), setup_body(pin_required=True)
    assert gate.check(setup, NO_PIN, None, T0).outcome == "need_pin"
    # No hash on file: no PIN is right (staff must set one first).
    assert gate.check(setup, NO_PIN, PIN, T0).outcome == "wrong_pin"
    assert gate.check(setup, WITH_PIN, PIN, T0).outcome == "ok"


@pytest.mark.parametrize("pin", ["0000", "12345", "1234 ", "", "x" * 16])
def test_a_wrong_pin_is_wrong(pin: str) -> None:
    result = Gate().check(setup_body(), WITH_PIN, pin, T0)
    assert (result.outcome, result.code) == ("wrong_pin", WITH_PIN)


def test_three_wrong_pins_within_five_minutes_lock_the_code_even_against_the_right_pin() -> None:
    gate, setup = Gate(), setup_body()
    assert MAX_PIN_FAILURES == 3 and LOCK_S == 300.0
    assert gate.check(setup, WITH_PIN, "0000", T0).outcome == "wrong_pin"
    assert gate.check(setup, WITH_PIN, "0001", T0 + 60).outcome == "wrong_pin"
    assert gate.check(setup, WITH_PIN, "0002", T0 + 120).outcome == "locked"
    assert gate.check(setup, WITH_PIN, PIN, T0 + 121).outcome == "locked"
    assert gate.check(setup, WITH_PIN, None, T0 + 122).outcome == "locked"
    # The lock is per code: other patients check in as usual.
    assert gate.check(setup, NO_PIN, None, T0 + 122).outcome == "ok"


def test_wrong_pins_further_apart_than_five_minutes_do_not_lock() -> None:
    gate, setup = Gate(), setup_body()
    for n in range(5):
        assert gate.check(setup, WITH_PIN, "0000", T0 + n * (LOCK_S / 2 + 1)).outcome == "wrong_pin"


def test_the_lock_ends_after_five_minutes_and_the_right_pin_then_admits_and_clears_the_count() -> None:
    gate, setup = Gate(), setup_body()
    for n in range(MAX_PIN_FAILURES):
        gate.check(setup, WITH_PIN, "0000", T0 + n)
    assert gate.check(setup, WITH_PIN, PIN, T0 + LOCK_S - 1).outcome == "locked"
    assert gate.check(setup, WITH_PIN, PIN, T0 + MAX_PIN_FAILURES + LOCK_S).outcome == "ok"
    # Admitted: earlier failures no longer count towards a lock.
    later = T0 + MAX_PIN_FAILURES + LOCK_S + 1
    assert gate.check(setup, WITH_PIN, "0000", later).outcome == "wrong_pin"
    assert gate.check(setup, WITH_PIN, "0000", later + 1).outcome == "wrong_pin"


def test_a_lock_lasts_five_minutes_from_the_third_wrong_pin_even_when_the_wrong_pins_were_spread_out() -> None:
    """The patient is told to "wait a few minutes": the lock must not lift seconds after it was shown."""
    gate, setup = Gate(), setup_body()
    assert gate.check(setup, WITH_PIN, "0000", T0).outcome == "wrong_pin"
    assert gate.check(setup, WITH_PIN, "0001", T0 + 200).outcome == "wrong_pin"
    assert gate.check(setup, WITH_PIN, "0002", T0 + 290).outcome == "locked"
    # Twenty seconds after "Too many wrong PINs", another guess must still be refused.
    assert gate.check(setup, WITH_PIN, PIN, T0 + 310).outcome == "locked"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [(" P-1001 ", NO_PIN), ("P- 10 01", NO_PIN), ("p-1001", NO_PIN), ("\tp-3003\n", OTHER), ("p-2002", WITH_PIN)],
)
def test_spaces_and_letter_case_are_forgiven_and_the_roster_code_is_used(typed: str, expected: str) -> None:
    result = Gate().check(setup_body(), typed, None, T0)
    assert result.code == expected
    assert result.outcome == ("need_pin" if expected == WITH_PIN else "ok")


def test_normalise_code_removes_every_kind_of_space_and_nothing_else() -> None:
    assert normalise_code(" P -\t10\n01 ") == "P-1001"
    assert normalise_code("p-1001") == "p-1001"


def test_wrong_pins_typed_in_lower_case_count_against_the_same_code() -> None:
    gate, setup = Gate(), setup_body()
    gate.check(setup, "p-2002", "0000", T0)
    gate.check(setup, " P-2002", "0000", T0 + 1)
    assert gate.check(setup, "P-2002", "0000", T0 + 2).outcome == "locked"
