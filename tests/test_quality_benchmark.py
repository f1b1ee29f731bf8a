"""Smoke tests of benchmarks/quality.py and benchmarks/restarts.py: each runs end to end on a tiny case and
writes what it promises.

Not a quality check: dip gets two steps, so its numbers mean nothing here. BM3D, OpenCV and PyWavelets are
optional; the test passes with or without them, and checks that the missing ones are named, not silently dropped.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TASKS = ("gauss25", "drop50")
METHODS = ("dip", "dip-paper", "tv", "nlm", "wavelet", "median", "bm3d", "biharmonic", "opencv-telea", "opencv-ns")


@pytest.fixture
def quality(monkeypatch):
    # benchmarks/ is a folder of scripts, not a package: quality.py imports early_stopping as its neighbour
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("quality")


def test_tiny_run_writes_one_row_per_case_and_a_table(quality, tmp_path, capsys):
    table, rows_csv = tmp_path / "quality.md", tmp_path / "quality.csv"
    argv = ["--images", "astronaut", "--size", "32", "--tasks", ",".join(TASKS), "--methods", ",".join(METHODS)]
    argv += ["--dip-iters", "2", "--device", "cpu", "--threads", "1", "--csv", str(rows_csv), "--markdown", str(table)]

    assert quality.main(argv) == 0

    with rows_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == quality.COLUMNS
    installed = {name for name in METHODS if quality.METHODS[name].unavailable() is None}
    expected = {
        (task, method)
        for task in TASKS
        for method in installed
        if quality.family(task) in quality.METHODS[method].families
    }
    assert {(row["task"], row["method"]) for row in rows} == expected
    assert len(rows) == len(expected)  # one seed, one image: one row per task and method
    # always there, whatever is installed; and a method that does not apply is skipped, not run
    assert {("gauss25", "dip"), ("gauss25", "tv"), ("gauss25", "nlm"), ("drop50", "biharmonic")} <= expected
    assert ("drop50", "tv") not in expected and ("gauss25", "biharmonic") not in expected
    for row in rows:
        assert row["image"] == "astronaut" and row["seed"] == "0" and row["size"] == "32x32"
        for key in ("input_psnr", "input_ssim", "psnr", "ssim", "seconds"):
            float(row[key])  # a number, whatever its value

    markdown = table.read_text()
    out = capsys.readouterr()
    assert markdown in out.out  # the table is printed as well as written
    assert "| task | cases | input |" in markdown and "| gauss25 | 1 |" in markdown and "| drop50 | 1 |" in markdown
    assert "torch" in markdown  # the machine line
    for optional, module in (("bm3d", "bm3d"), ("opencv-telea", "cv2"), ("wavelet", "pywt")):
        if importlib.util.find_spec(module) is None:
            assert f"skipped {optional}: {module} is not installed" in markdown

    # the same tables again from the CSV alone, per image too
    again = tmp_path / "again.md"
    assert quality.main(["--from-csv", str(rows_csv), "--markdown", str(again)]) == 0
    rebuilt = again.read_text()
    assert markdown.split("Mean PSNR", 1)[1] == rebuilt.split("Mean PSNR", 1)[1]
    assert "| gauss25 | astronaut | 0 |" in rebuilt and "| drop50 | astronaut | 0 |" in rebuilt


def test_unknown_task_is_refused_with_the_known_ones(quality):
    with pytest.raises(SystemExit, match="gauss25"):
        quality.main(["--tasks", "gauss24", "--images", "astronaut"])


@pytest.fixture
def restarts(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("restarts")


def test_every_symmetry_is_undone_by_its_inverse_and_the_eight_differ(restarts):
    rng = np.random.default_rng(0)
    image = rng.random((6, 4, 3), dtype=np.float32)  # not square: quarter turns change the shape
    views = [restarts.to_view(image, k) for k in range(restarts.SYMMETRIES)]

    for k, view in enumerate(views):
        np.testing.assert_array_equal(restarts.from_view(view, k), image)
    assert len({view.tobytes() + bytes(view.shape) for view in views}) == restarts.SYMMETRIES
    # the "4 mirrors" group keeps the shape, so its fits could be stacked for a non-square image
    mirrors = [int(label[1:]) for label in restarts.groups(2)["4 mirrors"]]
    assert all(views[k].shape == image.shape for k in mirrors)


def test_restarts_benchmark_tiny_run_scores_every_group(restarts, tmp_path, capsys):
    argv = ["--images", "astronaut", "--size", "32", "--seeds", "2", "--iters", "3", "--out", str(tmp_path)]

    assert restarts.main(argv) == 0

    saved = np.load(tmp_path / "astronaut.npz")
    assert {"clean", "noisy", "s1", *(f"v{k}" for k in range(8))} <= set(saved.files)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(restarts.groups(2)) <= set(summary["mean"])
    assert "| **mean** |" in capsys.readouterr().out
