"""`kiosk bench camera-vitals --quick --json`: the benchmark runs end to end and reports what it promises.

Quick mode is a smoke test (two skin tones, still faces only, 14 s videos, both controls), so only what must
hold even there is asserted: the controls abstain, the still faces get a number, the naive baseline is in the
report next to ours. Accuracy and speed targets are the full run's business, and no timing is asserted (these
machines are shared and noisy).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Any

import pytest

from device import cli


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One quick run for the whole module (about half a minute); stdout captured here, as capsys is per test."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["bench", "camera-vitals", "--quick", "--json"]) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object"
    parsed: dict[str, Any] = json.loads(lines[0])
    print(json.dumps(parsed, indent=1))  # the figures, for whoever reads the test log
    return parsed


def test_the_report_has_every_section(report: dict[str, Any]) -> None:
    for key in ("settings", "videos", "heart_rate", "controls", "respiration_at_rest", "speed", "targets"):
        assert key in report
    assert report["settings"]["quick"] is True
    assert report["settings"]["opencv_threads"] == 1
    assert set(report["heart_rate"]) == {"pos", "chrom", "green"}
    assert set(report["speed"]["stages"]) == {"capture_decode", "detection", "tracking_regions", "signal_processing"}
    assert set(report["targets"]) >= {"hr_mae_static", "within_5_bpm", "abstains_on_noise_and_no_face"}


def test_noise_and_no_face_abstain(report: dict[str, Any]) -> None:
    controls = report["controls"]
    assert set(controls) == {"noise", "no_face"}
    for name, control in controls.items():
        assert control["abstained"] is True, f"{name}: claimed {control['pos_bpm']}"
        assert control["pos_bpm"] is None and control["reason"]
    assert controls["no_face"]["reason"] == "face not found"
    assert report["targets"]["abstains_on_noise_and_no_face"]["pass"] is True


def test_still_faces_get_a_heart_rate_error_for_every_tone(report: dict[str, Any]) -> None:
    static = report["heart_rate"]["pos"]["by_condition"]["static"]
    assert isinstance(static["mae_bpm"], float) and math.isfinite(static["mae_bpm"])
    for tone in report["settings"]["tones"]:
        assert isinstance(report["cells_pos"]["static"][tone]["mae_bpm"], float)
    for video in report["videos"]:
        if video["condition"] == "static":
            assert isinstance(video["heart_rate"]["pos"]["error_bpm"], float)


def test_the_green_baseline_is_reported_on_the_same_videos(report: dict[str, Any]) -> None:
    green = report["heart_rate"]["green"]["by_condition"]["static"]
    assert green["videos"] == report["heart_rate"]["pos"]["by_condition"]["static"]["videos"] > 0
    assert isinstance(green["mae_bpm"], float)
    assert "green_would_claim_bpm" in report["controls"]["noise"]
    for video in report["videos"]:
        assert set(video["heart_rate"]) == {"pos", "chrom", "green"}


def test_bad_options_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "camera-vitals", "--tones", "VII"]) == 2
    assert cli.main(["bench", "camera-vitals", "--conditions", "windy"]) == 2
    assert cli.main(["bench", "camera-vitals", "--seconds", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("kiosk bench camera-vitals: ") for line in err)
