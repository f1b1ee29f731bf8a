"""Smoke tests of benchmarks/speed.py (a tiny case runs end to end and every row carries what the table reports),
of the variants of benchmarks/early_stopping.py (a faster way of computing the steps, judged by its PSNR) and
of benchmarks/parallel.py (K images at once against one after another).

Not a speed check: two timed steps of a 32 px image say nothing about speed. The GFLOP count is checked against
a count made by hand, since it is the yardstick the README sets the step times against.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def speed(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("speed")


def test_tiny_run_reports_each_variant_against_plain(speed, tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = ["--presets", "light-jpeg", "--sizes", "32", "--variants", "plain,sync", "--steps", "2", "--warmup", "1"]
    argv += ["--device", "cpu", "--threads", "1", "--conv-ceiling", "--json", str(out)]

    assert speed.main(argv) == 0

    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["preset"], r["size"], r["variant"]) for r in rows] == [
        ("light-jpeg", 32, "plain"),
        ("light-jpeg", 32, "sync"),
    ]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert row["steps_per_second"] > 0 and row["peak_memory_mib"] > 0
        assert row["gflop_per_second"] == pytest.approx(row["gflop_per_step"] * row["steps_per_second"])
    assert rows[0]["ratio"] == 1
    assert report["machine"]["threads"] == 1
    [ceiling] = report["conv_ceiling"]
    assert ceiling["size"] == 32 and set(ceiling["gflop_per_second"]) == {"forward", "forward_backward"}
    assert all(rate > 0 for rate in ceiling["gflop_per_second"].values())
    assert "light-jpeg" in capsys.readouterr().out


def test_gflop_count_is_forward_and_weight_gradient_at_two_flops_per_multiply_add(speed):
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    z = torch.zeros(1, 4, 16, 16)
    multiply_adds = 8 * 4 * 9 * 16 * 16  # of the forward; the weight gradient takes as many again
    # z, like the net's input in a fit, needs no gradient: no input gradient is computed, none is counted
    assert speed._gflop_per_step(conv, z) == pytest.approx(2 * 2 * multiply_adds / 1e9)


def test_early_stopping_compares_variants_case_by_case(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    early_stopping = importlib.import_module("early_stopping")
    argv = ["--images", "astronaut", "--corruptions", "gauss25", "--size", "32", "--cap", "3", "--preset", "light"]
    argv += ["--variants", "plain,channels_last", "--threads", "1", "--track-every", "1"]

    assert early_stopping.main(argv) == 0

    out = capsys.readouterr().out
    assert "# channels_last - plain, peak PSNR (output average), 1 cases" in out
    assert "# channels_last / plain:" in out


def test_parallel_benchmark_fits_the_same_images_both_ways(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    parallel = importlib.import_module("parallel")
    out = tmp_path / "parallel.json"
    argv = ["--k", "1,2", "--size", "32", "--steps", "3", "--preset", "light", "--device", "cpu", "--threads", "1"]

    assert parallel.main([*argv, "--json", str(out)]) == 0

    rows = json.loads(out.read_text())["rows"]
    assert [row["k"] for row in rows] == [1, 2]
    for row in rows:
        assert row["largest_psnr_difference"] < 0.05  # three steps: rounding has had little time to grow
        assert row["speedup"] == pytest.approx(row["sequential_seconds"] / row["parallel_seconds"])


@pytest.mark.parametrize("rule,cap", [("spread", 400), ("wmv", 150)])
def test_a_replay_of_the_traces_decides_as_the_live_detector_did(monkeypatch, tmp_path, rule, cap):
    # The rule is chosen on replays of saved traces; that is only sound if a replay returns what a real run returns.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    early_stopping = importlib.import_module("early_stopping")
    settings = ["--rule", rule, "--window", "50", "--warmup", "60", "--patience", "10"]
    live, traces, replayed = tmp_path / "live.json", tmp_path / "traces.json", tmp_path / "replay.json"
    argv = ["--images", "astronaut", "--corruptions", "gauss50", "--size", "32", "--cap", str(cap)]
    argv += ["--preset", "light", "--threads", "1", *settings]
    assert early_stopping.main([*argv, "--json", str(live), "--traces", str(traces)]) == 0
    assert early_stopping.main(["--replay", str(traces), *settings, "--json", str(replayed)]) == 0

    candidates = importlib.import_module("stopping_candidates")
    assert candidates.main([str(traces)]) == 0  # the rules not kept score on the same traces

    (live_row,), (replay_row,) = json.loads(live.read_text())["rows"], json.loads(replayed.read_text())["rows"]
    assert live_row["detected_at"] is not None  # the detector fired, so the comparison says something
    assert (replay_row["detected_at"], replay_row["best_iteration"]) == (
        live_row["detected_at"],
        live_row["best_iteration"],
    )
