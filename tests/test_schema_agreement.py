"""The published JSON Schema and the hub agree: what one refuses, the other refuses.

A device maker validates against device/protocol/envelope.schema.json, not against our pydantic models,
so the envelopes here come from that committed file (hypothesis-jsonschema) and are judged by an
independent validator (jsonschema, draft 2020-12, formats checked). The hub (`parse_envelope`) must accept
exactly the envelopes the schema accepts, apart from the rules JSON Schema cannot state, which are named
below and kept to the two the code lists in SEMANTIC_RULES.
"""

from __future__ import annotations

import copy
import json
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis_jsonschema import _from_schema, from_schema
from jsonschema import Draft202012Validator

from device.protocol import EnvelopeError, parse_envelope
from device.protocol.envelope import MAX_WIRE_INT, SEMANTIC_RULES

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "device" / "protocol" / "envelope.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


# --- hypothesis-jsonschema on today's Hypothesis --------------------------------------------------------

_END = object()


class _ManyWithMore:
    """hypothesis-jsonschema 0.23.1 (the latest) draws object keys with `many(...).more()`, which Hypothesis
    removed (6.170 iterates `with many(...) as e: for _ in e:`). This gives it the old interface over the
    new one. Every generated envelope is checked against the schema below, so an adapter that went wrong
    fails the tests instead of quietly weakening them."""

    def __init__(self, data: Any, **sizes: Any) -> None:
        self._many = conjecture_utils.many(data, **sizes)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        if next(self._elements, _END) is _END:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


if not hasattr(conjecture_utils.many, "more"):
    _from_schema.cu = types.SimpleNamespace(many=_ManyWithMore)  # type: ignore[attr-defined]

# hypothesis-jsonschema rebuilds (resolves and canonicalises) the strategy of every nested schema on every
# draw: 0.7 s an envelope here. The strategy depends only on its arguments, so build each one once.
_uncached = getattr(_from_schema, "__from_schema")
_built: dict[tuple[str, int, int], Any] = {}


def _from_schema_once(schema: Any, *, alphabet: Any, custom_formats: Any) -> Any:
    key = (json.dumps(schema, sort_keys=True), id(alphabet), id(custom_formats))
    if key not in _built:
        _built[key] = _uncached(schema, alphabet=alphabet, custom_formats=custom_formats)
    return _built[key]


setattr(_from_schema, "__from_schema", _from_schema_once)

ENVELOPES = from_schema(SCHEMA)
FAST = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same envelopes every run: a failure here is the code's, not the draw's
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the independent judge: jsonschema, with ECMA-262 regexes ----------------------------------------------


def _ecma(pattern: str) -> str:
    """JSON Schema's regexes are ECMA-262; Python's `$` also matches before a final newline, ECMA's does not.

    Every pattern of the schema ends with its only `$` (test_patterns_translate_exactly), so this is exact.
    """
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not re.search(_ecma(pattern), instance, re.ASCII):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _pattern})
JUDGE = EcmaValidator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _schema_refusal(doc: Any) -> str | None:
    error = jsonschema.exceptions.best_match(JUDGE.iter_errors(doc))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "(envelope)"
    return f"{where}: {error.message[:160]}" + ("..." if len(error.message) > 160 else "")


def _hub_refusal(doc: Any) -> str | None:
    try:
        parse_envelope(json.dumps(doc).encode())
    except EnvelopeError as exc:
        return str(exc)
    return None


# --- the rules JSON Schema cannot state -------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _index_not_below_count(doc: Any) -> bool:
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(payload, dict) or doc.get("kind") != "attachment":
        return False
    index, count = payload.get("index"), payload.get("count")
    return _number(index) and _number(count) and index >= count


def _link_id_repeated(doc: Any) -> bool:
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(payload, dict) or doc.get("kind") != "case" or not isinstance(payload.get("answers"), list):
        return False
    ids = [a.get("link_id") for a in payload["answers"] if isinstance(a, dict)]
    return len(ids) != len(set(map(str, ids)))


# Comparing two values of one envelope is beyond JSON Schema (no keyword relates one property to another,
# and uniqueItems compares whole items, not their link_id). Keep this list short: a rule the schema can
# state belongs in the schema.
SEMANTIC_EXCEPTIONS: dict[str, Callable[[Any], bool]] = {
    "an attachment chunk's index is below its count": _index_not_below_count,
    "a case answers each questionnaire item (link_id) at most once": _link_id_repeated,
}


def assert_agree(doc: Any, what: str = "") -> None:
    """The hub accepts `doc` exactly when the schema does and no semantic rule is broken."""
    by_schema, by_hub = _schema_refusal(doc), _hub_refusal(doc)
    shown = "\n" + json.dumps(doc)[:600]  # on its own line: the sweep below reports first lines only
    broken = [rule for rule, check in SEMANTIC_EXCEPTIONS.items() if check(doc)]
    if by_schema is None and broken:
        assert by_hub is not None, f"{what}: the hub accepted an envelope that breaks {broken}{shown}"
        assert any(SEMANTIC_RULES[rule] in by_hub for rule in broken), f"{what}: {by_hub!r} names no broken rule"
        return
    assert (by_schema is None) == (by_hub is None), (
        f"{what}: schema {'accepts' if by_schema is None else 'refuses (' + by_schema + ')'}, "
        f"hub {'accepts' if by_hub is None else 'refuses (' + by_hub + ')'}{shown}"
    )


# --- mutations -----------------------------------------------------------------------------------------------


def _time_variants(text: str) -> list[tuple[str, Any]]:
    date, rest = text[:10], text[11:]
    return [
        ("space for T", f"{date} {rest}"),
        ("lower-case t and z", text.lower()),
        ("no offset", text.rstrip("Zz")),
        ("no seconds", f"{date}T{rest[:5]}Z"),
        ("Unix seconds", 1764237523),
        ("Unix seconds as text", "1764237523"),
        ("year 1899", f"1899{text[4:]}"),
        ("year 3000", f"3000{text[4:]}"),
        ("30 February", f"{text[:4]}-02-30{text[10:]}"),
        ("leap second", f"{date}T23:59:60Z"),
        ("offset +24:00", f"{date}T{rest[:8]}+24:00"),
        ("offset -05:30", f"{date}T{rest[:8]}-05:30"),
        ("nine fraction digits", f"{date}T{rest[:8]}.123456789Z"),
        ("empty fraction", f"{date}T{rest[:8]}.Z"),
    ]


def mutations(key: Any, value: Any) -> list[tuple[str, Any]]:
    """Wrong and edge values for one place in an envelope; `key` is its name (or list index)."""
    out: list[tuple[str, Any]] = [("null", None), ("true", True), ("object", {}), ("list", [])]
    if _number(value):
        out += [
            ("number as text", json.dumps(value)),
            ("false", False),
            ("as x.0", float(value)),
            ("plus 0.5", value + 0.5),
            ("negative", -1),
            ("zero", 0),
            ("2**53 - 1", MAX_WIRE_INT),
            ("2**53", 2**53),
            ("2**64", 2**64),
            ("-(2**53)", -(2**53)),
            ("1e300", 1e300),
            ("half", 0.5),
        ]
    elif isinstance(value, bool):
        out += [("1", 1), ('"true"', "true"), ("false", False)]
    elif isinstance(value, str):
        out += [
            ("number", 12),
            ("empty", ""),
            ("trailing newline", value + "\n"),
            ("leading space", " " + value),
            ("upper case", value.upper()),
            ("long", value * 40 + "x" * 70),
        ]
        if TIME.match(value):
            out += _time_variants(value)
        if key == "kind":
            out += [(kind, kind) for kind in ("consult", "observations", "status", "attachment", "case", "receipt")]
    elif isinstance(value, list):
        out += [("empty list", []), ("[null]", [None])]
        if value:
            out += [("first repeated", [*value, value[0]]), ("first only", value[:1])]
    elif isinstance(value, dict):
        out += [("extra key", {**value, "extra": 1})]
        out += [(f"without {k}", {n: v for n, v in value.items() if n != k}) for k in value]
    return out


def places(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from places(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from places(v, (*path, i))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    here = out
    for step in path[:-1]:
        here = here[step]
    here[path[-1]] = value
    return out


# --- seeds: one envelope of each kind with every optional field present ------------------------------------

CLOCK = {"time": "2026-11-27T09:58:43.912Z", "offset_ms": -1840.0, "source": "hub"}
HEAD = {"v": 1, "id": "01a21c71-67c8-70be-a4de-b9a707b172d5", "kiosk": "clinic-north-02", "seq": 1042, "clock": CLOCK}
SEEDS: dict[str, dict[str, Any]] = {
    "observations": {
        **HEAD,
        "kind": "observations",
        "payload": {
            "subject": "P1001",
            "observations": [
                {
                    "code": "59408-5",
                    "value": 97,
                    "unit": "%",
                    "effective": "2026-11-27T09:58:41.250Z",
                    "device": {"id": "C4:7F", "type": "ble", "manufacturer": "M", "model": "X", "serial": "S1",
                               "firmware": "1.4"},
                    "flags": ["body_movement"],
                    "device_clock_offset_s": -2.5,
                    "device_user": 1,
                    "device_sequence": 17,
                    "method": "rppg-pos",
                    "quality": 0.9,
                },
                {"code": "12345-6", "value": 4.25, "unit": "mg/dL", "effective": "2026-11-27T04:58:41-05:00",
                 "device": {"id": "manual-1", "type": "manual"}},
            ],
        },
    },
    "status": {
        **HEAD,
        "kind": "status",
        "payload": {
            "software_version": "0.1.0",
            "outbox_backlog": 3,
            "outbox_capacity": 100000,
            "uptime_s": 3600.5,
            "alerts": [{"code": "outbox_near_full", "message": "Outbox 90% full.", "since": "2026-11-27T09:00:00Z"}],
            "config_version": 4,
            "config_error": "heartbeat_s: too small",
        },
    },
    "attachment": {
        **HEAD,
        "kind": "attachment",
        "payload": {
            "attachment": "5f0c7a1e-2222-4333-8444-555566667777",
            "media_type": "image/jpeg",
            "size": 5,
            "sha256": "0" * 64,
            "index": 1,
            "count": 2,
            "data": "QUJD",
            "subject": "P1001",
        },
    },
    "case": {
        **HEAD,
        "kind": "case",
        "payload": {
            "case": "0b1e8c2a-1111-4222-8333-444455556666",
            "subject": "P1001",
            "questionnaire": {"id": "general-intake", "version": 1},
            "answers": [{"link_id": "fever", "value": True}, {"link_id": "days", "value": 3},
                        {"link_id": "temp", "value": 38.5}, {"link_id": "where", "value": ["chest", "back"]},
                        {"link_id": "note", "value": "since Monday"}],
            "text": "Cough since Monday.",
            "attachments": ["5f0c7a1e-2222-4333-8444-555566667777"],
            "vitals": ["01a21c71-7b50-7186-ad8f-2523e25e40ce"],
            "created": "2026-11-27T10:00:00Z",
        },
    },
}  # fmt: skip


# --- the judge and the seeds are what they claim ------------------------------------------------------------


def test_the_judge_checks_formats_and_reads_patterns_as_ecma() -> None:
    assert not Draft202012Validator.FORMAT_CHECKER.conforms("2026-02-30T10:00:00Z", "date-time"), (
        "jsonschema does not check format date-time here (rfc3339-validator missing?): the agreement "
        "tests would miss impossible dates"
    )
    seed = SEEDS["status"]
    assert _schema_refusal(seed) is None
    assert _schema_refusal(replaced(seed, ("kiosk",), "clinic-north-02\n")) is not None


def test_patterns_translate_exactly() -> None:
    patterns = [v for path, v in places(SCHEMA) if path and path[-1] == "pattern" and isinstance(v, str)]
    assert len(patterns) > 10
    for pattern in patterns:
        assert "$" not in pattern[:-1], f"{pattern!r}: _ecma translates only a final $"
        assert not re.search(r"\\[dDwWsSbB]", pattern), f"{pattern!r}: use explicit classes, engines disagree"


def test_the_exceptions_are_the_ones_the_code_names() -> None:
    assert set(SEMANTIC_EXCEPTIONS) == set(SEMANTIC_RULES)
    assert len(SEMANTIC_EXCEPTIONS) <= 2, "a new semantic exception: can the schema state it instead?"


@pytest.mark.parametrize("kind", SEEDS)
def test_each_seed_is_accepted_by_both(kind: str) -> None:
    assert _schema_refusal(SEEDS[kind]) is None
    assert _hub_refusal(SEEDS[kind]) is None


def test_the_semantic_exceptions_are_exercised() -> None:
    attachment = replaced(SEEDS["attachment"], ("payload", "index"), 2)
    assert _schema_refusal(attachment) is None
    assert "is not below the chunk count" in (_hub_refusal(attachment) or "")
    answers = SEEDS["case"]["payload"]["answers"]
    case = replaced(SEEDS["case"], ("payload", "answers"), [*answers, answers[0]])
    assert _schema_refusal(case) is None
    assert "answered at most once" in (_hub_refusal(case) or "")


# --- agreement ----------------------------------------------------------------------------------------------------


@FAST
@given(ENVELOPES)
def test_every_envelope_the_schema_accepts_the_hub_accepts(doc: Any) -> None:
    assert _schema_refusal(doc) is None, "hypothesis-jsonschema generated an envelope its schema refuses"
    assert_agree(doc, "generated")


@pytest.mark.parametrize("kind", SEEDS)
def test_every_mutation_of_every_field_is_judged_alike(kind: str) -> None:
    """Each place of the seed gets each wrong or edge value; all disagreements are reported at once."""
    seed, failures, checked = SEEDS[kind], [], 0
    for path, value in places(seed):
        for label, new in mutations(path[-1] if path else None, value):
            checked += 1
            try:
                assert_agree(replaced(seed, path, new), f"{'.'.join(map(str, path)) or '(envelope)'} <- {label}")
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert checked > 200
    assert not failures, f"{len(failures)} of {checked} mutations judged differently:\n" + "\n".join(failures[:20])


@FAST
@given(doc=ENVELOPES, data=st.data())
def test_mutated_generated_envelopes_are_judged_alike(doc: Any, data: st.DataObject) -> None:
    path, value = data.draw(st.sampled_from(list(places(doc))), label="place")
    label, new = data.draw(st.sampled_from(mutations(path[-1] if path else None, value)), label="mutation")
    assert_agree(replaced(doc, path, new), f"{'.'.join(map(str, path)) or '(envelope)'} <- {label}")
