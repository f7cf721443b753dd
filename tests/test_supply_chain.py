"""The supply chain: what is installed is what is locked, and the SBOM lists all of it.

A clinic's IT (or an auditor) reads the SBOM to learn what runs on their kiosks and hub; it is only
worth reading if it matches the lock the tests ran with, and the lock only if it covers every
dependency pyproject.toml declares.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import REPO

BIN = Path(sys.executable).parent


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip()).groups()  # type: ignore[union-attr]
            pins[str(canonicalize_name(name))] = version
    return pins


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += [r for r in extra if not r.startswith("telehealth-edge")]
    pins = locked()
    for spec in declared:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not locked: run `make lock`"
        assert pins[name] in requirement.specifier, f"the lock's {name}=={pins[name]} does not satisfy {spec}"


def test_the_environment_is_the_lock() -> None:
    installed = {str(canonicalize_name(d.metadata["Name"])): d.version for d in metadata.distributions()}
    for name, version in locked().items():
        assert installed.get(name) == version, f"{name}: locked {version}, installed {installed.get(name)}"


def test_the_sbom_lists_every_locked_package(tmp_path: Path) -> None:
    out = tmp_path / "sbom.json"
    subprocess.run(
        [str(BIN / "cyclonedx-py"), "environment", sys.executable, "--pyproject", str(REPO / "pyproject.toml"),
         "--output-reproducible", "--of", "JSON", "--no-validate", "-o", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "telehealth-edge"
    listed = {str(canonicalize_name(c["name"])): c for c in bom["components"]}
    for name, version in locked().items():
        assert name in listed, f"{name} is missing from the SBOM"
        assert listed[name]["version"] == version
        assert re.fullmatch(r"pkg:pypi/[a-z0-9.\-]+@" + re.escape(version), listed[name]["purl"]), listed[name]["purl"]
