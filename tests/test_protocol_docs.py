"""docs/protocol.md and the committed JSON Schemas must say what the code does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from device.protocol import encode, parse_envelope, parse_receipt
from device.protocol.envelope import envelope_json_schema, receipt_json_schema
from device.protocol.topics import BATCH, DELIVERED, Topics
from device.protocol.vitals import VITALS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"
PROTOCOL_DIR = ROOT / "device" / "protocol"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _normalised(schema: dict[str, Any]) -> Any:
    """What the generated schema looks like once written as JSON and read back (tuples become lists)."""
    return json.loads(json.dumps(schema))


@pytest.mark.parametrize(
    ("filename", "generate", "command"),
    [
        ("envelope.schema.json", envelope_json_schema, "kiosk protocol schema"),
        ("receipt.schema.json", receipt_json_schema, "kiosk protocol receipt-schema"),
    ],
)
def test_committed_schema_matches_the_code(filename: str, generate: Callable[[], dict[str, Any]], command: str) -> None:
    path = PROTOCOL_DIR / filename
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert committed == _normalised(generate()), (
        f"device/protocol/{filename} differs from what the code generates: run `make schema` "
        f"(or `{command} > device/protocol/{filename}`) and commit the result"
    )


def test_every_known_vital_code_is_documented(doc: str) -> None:
    missing = [code for code in VITALS if f"`{code}`" not in doc]
    assert not missing, f"LOINC codes in device/protocol/vitals.py missing from docs/protocol.md: {missing}"


def _vitals_rows() -> list[str]:
    return [
        f"| `{code}` | {spec.name} | `{unit}` | {low:g} .. {high:g} |"
        for code, spec in VITALS.items()
        for unit, (low, high) in spec.units.items()
    ]


def test_vitals_table_matches_the_code(doc: str) -> None:
    rows = _vitals_rows()
    missing = [row for row in rows if row not in doc.splitlines()]
    assert not missing, (
        "the known-vitals table in docs/protocol.md is out of date; replace its rows with:\n" + "\n".join(rows)
    )


# Every topic Topics can build, with the placeholders the document uses.
TOPIC_FORMS: dict[str, list[str]] = {
    "uplink": [Topics.uplink("{id}", "{kind}"), Topics.uplink("{id}", BATCH)],
    "presence": [Topics.presence("{id}")],
    "receipt": [Topics.receipt("{id}")],
    "message": [Topics.message("{id}"), Topics.uplink("{id}", DELIVERED)],
    "config": [Topics.config("{id}")],
    "certificate": [Topics.certificate("{id}")],
    "downlink_filter": [Topics.downlink_filter("{id}")],
    "UPLINK_FILTER": [Topics.UPLINK_FILTER],
    "PRESENCE_FILTER": [Topics.PRESENCE_FILTER],
    "shared": [Topics.shared("{group}", Topics.UPLINK_FILTER)],
}


def test_topic_forms_cover_every_topic_builder() -> None:
    builders = {
        name for name in vars(Topics) if not name.startswith("_") and not name.startswith(("parse_", "is_valid_"))
    }
    assert builders == set(TOPIC_FORMS), (
        "Topics gained or lost a topic form: update TOPIC_FORMS here and the Topics section of docs/protocol.md"
    )


@pytest.mark.parametrize("topic", [t for forms in TOPIC_FORMS.values() for t in forms])
def test_every_topic_form_is_documented(doc: str, topic: str) -> None:
    assert f"`{topic}`" in doc, f"topic {topic!r} (from device/protocol/topics.py) is not in docs/protocol.md"


def _example(doc: str, marker: str) -> str:
    """The ```json block that starts on the line right after the line holding `marker`."""
    lines = doc.splitlines()
    starts = [i for i, line in enumerate(lines) if marker in line]
    assert len(starts) == 1, f"docs/protocol.md needs exactly one line containing {marker}"
    start = starts[0] + 1
    assert start < len(lines) and lines[start] == "```json", (
        f"docs/protocol.md: put a ```json block right after {marker}"
    )
    end = lines.index("```", start + 1)
    return "\n".join(lines[start + 1 : end])


def test_example_envelope_is_valid_and_canonical(doc: str) -> None:
    example = _example(doc, "<!-- example-envelope -->")
    env = parse_envelope(example)
    # Pretty-printed from the canonical bytes: nothing the code would send differently.
    assert json.loads(example) == json.loads(encode(env)), (
        "the example envelope is valid but not what encode() sends (times in UTC with milliseconds "
        "and Z, null fields left out): regenerate it with build_envelope and encode"
    )


def test_example_receipt_is_valid(doc: str) -> None:
    example = _example(doc, "<!-- example-receipt -->")
    receipt = parse_receipt(example)
    assert json.loads(example) == json.loads(receipt.model_dump_json(exclude_none=True)), (
        "the example receipt is valid but not what the hub sends: regenerate it from a Receipt"
    )
