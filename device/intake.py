"""The built-in intake questionnaires, shipped as YAML beside this module.

The kiosk shows the general intake until its clinic's own questionnaire arrives from the hub;
the hub offers the same files to every clinic. Both read them here, so there is one copy.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from device.protocol.questionnaire import Questionnaire

BUILT_IN_DIR = Path(__file__).parent / "questionnaires"


@cache
def built_in() -> dict[tuple[str, int], Questionnaire]:
    # PyYAML is needed only here (kiosk and hub extras), not by the wire contract.
    from device.yaml_config import load_model  # noqa: PLC0415

    found = {}
    for path in sorted(BUILT_IN_DIR.glob("*.yaml")):
        q = load_model(path, Questionnaire, document="a questionnaire")
        found[(q.id, q.version)] = q
    return found


def general_intake() -> Questionnaire:
    return built_in()[("general-intake", 1)]
