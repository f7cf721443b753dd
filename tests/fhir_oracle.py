"""An independent FHIR R4 oracle for the hub's FHIR output: checked by definitions we did not write.

tests/fhir_validator/validate.mjs (Node, installed by `make fhir-validator`) checks each resource against HL7's
R4 JSON Schema, the R4 StructureDefinitions (@medplum/core's validator: structure, cardinality, FHIRPath
invariants) and, for each meta.profile, HL7's R4 vital-signs profiles (medplum's validator plus a checker of the
profile's snapshot: cardinality, fixed and pattern values, slices, required bindings). A Bundle is checked whole
and entry by entry. Issues read "<checker>: <message> @<path>"; see validate.mjs for what each checker covers.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

VALIDATOR_DIR = Path(__file__).resolve().parent / "fhir_validator"
MAX_RESOURCES_SHOWN = 20
MAX_ISSUES_SHOWN = 8
MAX_ISSUE_CHARS = 300


class Result(TypedDict):
    index: int
    resourceType: str | None
    id: str | None
    issues: list[str]


def results(resources: Sequence[dict[str, Any]], *, medplum_reparse: bool = False) -> list[Result]:
    """Every resource's result, in order. medplum_reparse: medplum's documented (slower) profile call."""
    if not (VALIDATOR_DIR / "node_modules").is_dir():
        raise RuntimeError(
            f"the FHIR validator is not installed ({VALIDATOR_DIR}/node_modules): run `make fhir-validator`"
        )
    env = {**os.environ, "FHIR_ORACLE_MEDPLUM_REPARSE": "1" if medplum_reparse else "0"}
    timeout = 60 + 0.02 * len(resources)  # ~2 s to load the definitions, ~2 ms a resource here
    try:
        done = subprocess.run(
            ["node", str(VALIDATOR_DIR / "validate.mjs")],
            input=json.dumps(list(resources)),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise RuntimeError("node is not installed: run `make fhir-validator`") from exc
    if done.returncode != 0:
        raise RuntimeError(f"the FHIR validator failed (exit {done.returncode}): {done.stderr[-2000:]}")
    out: list[Result] = json.loads(done.stdout)["results"]
    if len(out) != len(resources):
        raise RuntimeError(f"the FHIR validator answered for {len(out)} of {len(resources)} resources")
    return out


def problems(resources: Sequence[dict[str, Any]]) -> dict[int, list[str]]:
    """The issues of each resource that has any, by its index in `resources`."""
    return {r["index"]: r["issues"] for r in results(resources) if r["issues"]}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ISSUE_CHARS else text[: MAX_ISSUE_CHARS - 3] + "..."


def assert_valid(resources: Sequence[dict[str, Any]], what: str) -> None:
    """Raise AssertionError naming each failing resource (type/id) and its issues."""
    failing = problems(resources)
    if not failing:
        return
    lines = [f"{what}: {len(failing)} of {len(resources)} resource(s) fail the FHIR R4 oracle"]
    for index, issues in list(failing.items())[:MAX_RESOURCES_SHOWN]:
        res = resources[index]
        lines.append(f"  [{index}] {res.get('resourceType')}/{res.get('id')}: {len(issues)} issue(s)")
        lines += [f"    - {_clip(issue)}" for issue in issues[:MAX_ISSUES_SHOWN]]
        if len(issues) > MAX_ISSUES_SHOWN:
            lines.append(f"    ... and {len(issues) - MAX_ISSUES_SHOWN} more")
    if len(failing) > MAX_RESOURCES_SHOWN:
        lines.append(f"  ... and {len(failing) - MAX_RESOURCES_SHOWN} more resource(s)")
    raise AssertionError("\n".join(lines))
