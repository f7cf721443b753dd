"""`kiosk bench camera-vitals --quick`: the benchmark runs end to end and reports what it promises.

Quick mode is a smoke test (photo faces at both ends of the Monk scale, still faces only, 14 s videos, five
no-pulse controls), so only what must hold even there is asserted: every section is in the report, both tables
and the controls are printed, nobody facing away is abstained from, and the naive baseline is reported next to
ours. How well the estimator does is the benchmark's finding, not this test's: accuracy and speed targets are
the full run's business, and no timing is asserted (these machines are shared and noisy).
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from device import cli
from device.camera import bench
from device.camera.synthetic import SyntheticSpec


@pytest.fixture(scope="module")
def quick() -> bench.Report:
    """One quick run for the whole module (about 40 s), rendered both ways below."""
    args = cli.build_parser().parse_args(["bench", "camera-vitals", "--quick"])
    return bench.run_benchmark(bench.config_from_args(args))


@pytest.fixture(scope="module")
def report(quick: bench.Report) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(json.dumps(quick.as_json()))
    print(json.dumps(parsed, indent=1))  # the figures, for whoever reads the test log
    return parsed


def test_the_report_has_every_section(report: dict[str, Any]) -> None:
    for key in ("settings", "videos", "heart_rate", "cells_pos", "controls", "false_heart_rates", "speed", "targets"):
        assert key in report
    settings = report["settings"]
    assert settings["quick"] is True and settings["opencv_threads"] == 1
    assert settings["faces"] == ["photo"] and settings["tones"] == ["MST-1", "MST-10"]
    assert set(report["heart_rate"]) == {"photo"}
    assert set(report["heart_rate"]["photo"]) == {"pos", "chrom", "green"}
    assert set(report["speed"]["stages"]) == {"capture_decode", "detection", "tracking_regions", "signal_processing"}
    assert report["speed"]["render_frames_per_s"]["photo"] > 0
    assert set(report["targets"]) >= {"face_found", "hr_mae_static", "within_5_bpm", "no_false_heart_rate"}


def test_every_tone_and_condition_is_summarised(report: dict[str, Any]) -> None:
    pos = report["heart_rate"]["photo"]["pos"]
    assert set(pos["by_tone"]) == {"MST-1", "MST-10"} and set(pos["by_condition"]) == {"static"}
    for summary in (*pos["by_tone"].values(), *pos["by_condition"].values()):
        assert summary["videos"] >= 1
        assert 0.0 <= summary["face_found_share"] <= 1.0
        assert summary["abstention_rate"] in (0.0, 0.5, 1.0)
        assert "within_5_bpm_share" in summary and "respiratory_rate" in summary
    photos = {v["photo"] for v in report["videos"] if v["kind"] == "condition"}
    assert photos == {"astronaut", "hopper"}  # the two tones get different photographs
    for video in report["videos"]:
        heart = video["heart_rate"]["pos"]
        assert set(video["heart_rate"]) == {"pos", "chrom", "green"}
        # A value, or an abstention with its reason: never neither.
        assert (heart["bpm"] is None) != (heart["abstained"] is None)


def test_every_control_is_reported_and_nobody_is_abstained_from(report: dict[str, Any]) -> None:
    controls = report["controls"]
    assert set(controls) == set(bench.QUICK_CONTROLS)
    for control in controls.values():
        assert control["what"]
        assert control["abstained"] == (control["pos_bpm"] is None)
        assert control["abstained"] == (control["reason"] is not None)
        assert isinstance(control["pos_window_values_bpm"], list)
    assert controls["no_face"]["reason"] == "face not found" and controls["no_face"]["face_share"] == 0.0
    assert "seen at 1.00 Hz" in controls["mains-120Hz"]["what"]
    false = report["false_heart_rates"]
    assert false["controls"] == len(controls)
    assert false["pos"] == [name for name, c in controls.items() if not c["abstained"]]
    assert report["targets"]["no_false_heart_rate"]["pass"] is (not false["pos"])


def test_the_green_baseline_is_reported_on_the_same_videos(report: dict[str, Any]) -> None:
    hr = report["heart_rate"]["photo"]
    assert hr["green"]["by_condition"]["static"]["videos"] == hr["pos"]["by_condition"]["static"]["videos"] == 2
    assert "green_would_claim_bpm" in report["controls"]["noise"]


def test_the_table_prints_tones_conditions_and_controls(quick: bench.Report) -> None:
    text = "\n".join(quick.lines())
    print(text)
    assert "photo faces by condition and by tone" in text
    for row in ("static", "MST-1", "MST-10", *bench.QUICK_CONTROLS):
        assert any(line.strip().startswith(row) for line in text.splitlines()), row
    assert "false heart rates: POS" in text and "targets" in text and "rendering" in text


def test_bad_options_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "camera-vitals", "--tones", "VII"]) == 2
    assert cli.main(["bench", "camera-vitals", "--tones", "11"]) == 2
    assert cli.main(["bench", "camera-vitals", "--conditions", "windy"]) == 2
    assert cli.main(["bench", "camera-vitals", "--faces", "synthetic", "--conditions", "talking"]) == 2
    assert cli.main(["bench", "camera-vitals", "--faces", "synthetic", "--tones", "3"]) == 2
    assert cli.main(["bench", "camera-vitals", "--photos", "mona_lisa"]) == 2
    assert cli.main(["bench", "camera-vitals", "--seconds", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 7 and all(line.startswith("kiosk bench camera-vitals: ") for line in err)


def test_tones_and_faces_are_parsed() -> None:
    parse = cli.build_parser().parse_args
    config = bench.config_from_args(parse(["bench", "camera-vitals", "--tones", "MST-3,10,v", "--faces", "both"]))
    assert config.faces == ("photo", "synthetic")
    assert config.tones == (3, 10, "V") and config.synthetic_tones == ("V",)
    default = bench.config_from_args(parse(["bench", "camera-vitals"]))
    assert default.faces == ("photo",) and default.tones == tuple(range(1, 11))
    assert default.conditions == ("static", "moderate", "hard", "low_light", "talking", "exposure")
    videos = bench.plan_videos(default)
    cells = [v for v in videos if v.kind == "condition"]
    assert len(cells) == 60 and len({(v.condition, v.tone) for v in cells}) == 60
    for tone in default.tones:  # every tone sees both photographs, and so does every condition
        assert {v.photo for v in cells if v.tone == f"MST-{tone}"} == {"astronaut", "hopper"}
    assert all(v.spec.lamp is not None for v in cells if v.condition == "hard")  # type: ignore[union-attr]
    assert {v.name for v in videos if v.kind == "control"} == set(bench.CONTROL_NAMES) - {"synthetic-noise"}
    # A subset renders exactly the same videos as the full run.
    only = bench.config_from_args(parse(["bench", "camera-vitals", "--tones", "10", "--conditions", "hard"]))
    [single] = [v for v in bench.plan_videos(only) if v.kind == "condition"]
    assert single.spec == next(v.spec for v in cells if v.name == single.name)


def test_synthetic_faces_are_still_available() -> None:
    """All three of their conditions are still planned; one, the hard one (sway, drift, flicker, jitter, drops: the
    most of the renderer), is run end to end by the command, its FFV1 round trip included. --quick only shortens
    that round trip (3 s, not 10): tones, conditions, controls and length are all given."""
    argv = ["bench", "camera-vitals", "--faces", "synthetic", "--tones", "VI", "--seconds", "13", "--controls", "none"]
    planned = bench.plan_videos(bench.config_from_args(cli.build_parser().parse_args(argv)))
    assert [v.name for v in planned] == ["syn-static-VI", "syn-moderate-VI", "syn-hard-VI"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*argv, "--conditions", "hard", "--quick", "--json"]) == 0
    parsed = json.loads(out.getvalue())
    assert set(parsed["heart_rate"]) == {"synthetic"}
    [video] = parsed["videos"]
    assert video["name"] == "syn-hard-VI" and video["seed"] == planned[-1].spec.seed  # the full run's hard video
    assert video["frames"] > 0 and video["heart_rate"]["pos"]["windows"] > 0


def test_an_estimator_that_raises_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(samples: object) -> None:
        raise ValueError("no frames")

    monkeypatch.setattr(bench, "estimate_respiratory_rate", broken)
    video = bench.Video("v", "condition", "static", "III", SyntheticSpec(seconds=13.0, seed=3))
    result = bench.run_video(video)
    assert result.errors == ["RR raised ValueError: no frames"]
    assert result.rr_bpm is None and result.rr_abstained == "ERROR ValueError"
    assert result.methods["pos"].windows > 0  # the others still ran
