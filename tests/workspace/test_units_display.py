"""Units as clinicians write them wherever a person reads them (mmHg, °C), UCUM wherever a program does (the
database, the API, FHIR, the readings CSV's `ucum` column, the charts' JSON `unit`)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from device.protocol.vitals import VITALS
from hub.web.units import UNIT_LABELS, unit_label, with_unit
from tests.workspace.world import NOW, World, day, obs

# What a person would never write: UCUM's brackets and braces, its Cel, its "m2".
UCUM_ONLY = re.compile(r"mm\[Hg\]|\[degF\]|\[lb_av\]|\[in_i\]|\bCel\b|kg/m2\b|\{score\}")


def test_every_unit_the_contract_allows_has_a_display_form() -> None:
    units = {unit for spec in VITALS.values() for unit in spec.units}
    missing = units - UNIT_LABELS.keys()
    assert missing == set()
    for unit in units:
        label = unit_label(unit)
        assert label and not re.search(r"[\[\]{}]", label), (unit, label)


@pytest.mark.parametrize(
    ("ucum", "shown"),
    [("mm[Hg]", "mmHg"), ("Cel", "°C"), ("[degF]", "°F"), ("/min", "/min"), ("%", "%"), ("kg", "kg"),
     ("[lb_av]", "lb"), ("mg/dL", "mg/dL"), ("mmol/L", "mmol/L"), ("cm", "cm"), ("m", "m"), ("[in_i]", "in"),
     ("kg/m2", "kg/m²"), ("kPa", "kPa")],
)  # fmt: skip
def test_units_read_as_clinicians_write_them(ucum: str, shown: str) -> None:
    assert unit_label(ucum) == shown


def test_a_unit_nobody_mapped_loses_only_its_annotations() -> None:
    assert unit_label("{beats}/min") == "/min"
    assert unit_label("mL") == "mL"
    assert unit_label(None) == "" and unit_label("") == ""
    assert with_unit("7", "{score}") == "7"  # a NEWS2 score is a bare number of points
    assert with_unit("151", "mm[Hg]") == "151 mmHg"


def test_pages_show_mmhg_and_keep_ucum_in_the_data(world: World, client_as: Callable[[str], TestClient]) -> None:
    provider = client_as(world.north.provider)
    alice = world.north.patients["N100"]
    world.send(world.north.kiosk, [obs("8310-5", 38.6, "Cel", NOW - timedelta(hours=1))], subject="N100")
    patient = provider.get(f"/patients/{alice}")
    assert patient.status_code == 200
    assert " mmHg" in patient.text and "38.6 °C" in patient.text
    assert UCUM_ONLY.findall(patient.text) == []
    queue = provider.get("/queue").text
    assert "151 mmHg" in queue and UCUM_ONLY.findall(queue) == []
    # The fever above raised an alert; its page says the value as a clinician would.
    alert_id = world.store.conn.execute("SELECT id FROM alerts WHERE rule_id = 'temperature-high'").fetchone()[0]
    alert = provider.get(f"/triage/{alert_id}").text
    assert "38.6 °C" in alert and UCUM_ONLY.findall(alert) == []
    case_id = world.send_case(world.north.kiosk, "N100", text="Feverish.", vitals=[
        world.send(world.north.kiosk, [obs("8310-5", 38.4, "Cel", day(0))], subject="N100")])  # fmt: skip
    case = provider.get(f"/cases/{case_id}").text
    assert "38.4 °C" in case and UCUM_ONLY.findall(case) == []
    # The charts' JSON keeps UCUM for programs and carries the label people read.
    charts = provider.get(f"/patients/{alice}/trends.json").json()["charts"]
    systolic = next(c for c in charts if c["code"] == "8480-6")
    assert systolic["unit"] == "mm[Hg]" and systolic["unit_label"] == "mmHg"
    # The readings CSV: UCUM in `ucum` (for programs), the unit as written in `unit` (for people).
    rows = list(csv.DictReader(io.StringIO(provider.get(f"/patients/{alice}/readings.csv").text)))
    pressure = next(r for r in rows if r["loinc"] == "8480-6")
    assert pressure["ucum"] == "mm[Hg]" and pressure["unit"] == "mmHg"
    assert next(r for r in rows if r["loinc"] == "8310-5")["unit"] == "°C"
