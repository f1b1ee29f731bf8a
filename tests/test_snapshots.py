"""Snapshots: schedules, the files and snapshots.json agreeing, and the pictures made from them (sheet, curves,
animation, report), through the library and the command line."""

import json
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dip.api import restore
from dip.errors import UsageError
from dip.io import read_image
from dip.snapshots import SnapshotRecorder, log_spaced, parse_schedule
from dip.visuals import sheet_layout

from conftest import run, small_image


def _save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def pair(tmp_path):
    clean = small_image(32)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    return _save(tmp_path / "noisy.png", noisy), _save(tmp_path / "clean.png", clean)


# --- schedules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cap", "expected"),
    [
        ("100,500,2400", 3000, [100, 500, 2400]),
        (" 500, 100,100 ", 3000, [100, 500]),
        ("every:250", 1000, [250, 500, 750, 1000]),
        ("every:300", 1000, [300, 600, 900]),
        ("every:5000", 1000, [1000]),
        ("log:5", 60, [1, 3, 8, 22, 60]),
        ("log:1", 60, [60]),
        ("log:4", 4, [1, 2, 3, 4]),
        ("LOG:3", 100, [1, 10, 100]),
    ],
)
def test_each_schedule_form_yields_exactly_its_iterations(spec, cap, expected):
    assert parse_schedule(spec, cap) == expected


@pytest.mark.parametrize("cap", [1, 2, 7, 60, 2000, 12000])
def test_log_spacing_is_distinct_increasing_and_spans_one_to_the_cap(cap):
    for count in {c for c in (1, 2, 3, 12, 60) if c <= cap} | ({cap} if cap <= 60 else set()):
        points = log_spaced(count, cap)
        assert len(points) == count and points[-1] == cap
        assert all(a < b for a, b in zip(points, points[1:], strict=False))
        assert count == 1 or points[0] == 1


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("every:0", "N >= 1"),
        ("log:0", "1 <= N"),
        ("log:61", "1 <= N"),
        ("often", "cannot read"),
        ("10,x", "cannot read"),
        (",", "names no iteration"),
        ("0,5", "start at 1"),
        ("10,61", "past the run's cap"),
    ],
)
def test_bad_schedules_say_what_is_accepted(spec, words):
    with pytest.raises(UsageError, match=words):
        parse_schedule(spec, 60)


# --- the recorder ----------------------------------------------------------------------------------------


def _step(iteration: int, value: float) -> SimpleNamespace:
    x = torch.full((1, 3, 8, 8), value)
    return SimpleNamespace(iteration=iteration, loss=1.0 / iteration, x=x, average=x * 0.5)


def test_recorder_keeps_scheduled_returned_and_last_iterates_with_their_roles(tmp_path):
    template = read_image(_save(tmp_path / "template.png", np.zeros((8, 8, 3), np.float32)))
    statistics = [float("nan")] * 2 + [0.5, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    recorder = SnapshotRecorder(
        tmp_path / "snaps", [2, 6], template, suffix=".png", averaged=True, statistic=lambda: statistics[step - 1]
    )
    for step in range(1, 11):
        recorder(_step(step, step / 10))
    returned = torch.full((1, 3, 8, 8), 0.2)  # the average at the detector's minimum, iteration 4
    result = SimpleNamespace(
        best_iteration=4, image=returned, losses=[1.0 / i for i in range(1, 11)], statistics=statistics, final_loss=0.1
    )
    kept = recorder.finish(result)

    assert [(s.iteration, s.roles) for s in kept] == [(2, ["scheduled"]), (4, ["returned"]), (6, ["scheduled"]),
                                                      (10, ["last"])]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [s.file for s in kept]
    assert kept[0].statistic is None  # NaN (window not yet full) is recorded as absent, not as NaN
    assert kept[1].statistic == 0.25 and kept[2].statistic == 0.4
    # the averaged image is what is kept: the step's average (x / 2), and the returned image as given
    assert read_image(tmp_path / "snaps" / kept[2].file).pixels.mean() == pytest.approx(0.3, abs=1 / 255)
    assert read_image(tmp_path / "snaps" / kept[1].file).pixels.mean() == pytest.approx(0.2, abs=1 / 255)


def test_library_snapshots_agree_with_their_manifest_and_the_returned_image(pair, tmp_path):
    noisy, clean = pair
    folder = tmp_path / "snaps"
    restoration = restore(
        noisy, preset="light", iterations=12, stop="off", snapshots="3,7", snapshot_dir=folder, reference=clean,
        wiener=False,  # the snapshots are the net's iterates; the filter would change only the final image
    )
    manifest = json.loads((folder / "snapshots.json").read_text())
    files = sorted(p.name for p in folder.glob("it*.png"))
    assert files == ["it000003.png", "it000007.png", "it000012.png"]
    assert [entry["file"] for entry in manifest["snapshots"]] == files
    assert [entry["iteration"] for entry in manifest["snapshots"]] == [3, 7, 12]
    assert manifest["snapshots"][-1]["roles"] == ["returned", "last"]
    assert manifest["returned_iteration"] == 12 and manifest["stop_reason"] == "cap"
    assert all("psnr" in entry and "ssim" in entry for entry in manifest["snapshots"])
    assert manifest["snapshots"][-1]["psnr"] == pytest.approx(restoration.metrics["psnr"], abs=1e-4)
    written = read_image(folder / "it000012.png").pixels
    np.testing.assert_allclose(written, restoration.picture.pixels, atol=0.5 / 255 + 1e-6)


# --- the command line ------------------------------------------------------------------------------------


class _Strict(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.sources += [value for name, value in attrs if name in ("src", "href")]


def test_restore_with_snapshots_makes_sheet_curves_animation_and_report(capsys, pair, tmp_path):
    noisy, clean = pair
    output = tmp_path / "out.png"
    code, out, err = run(
        capsys, "restore", noisy, "-o", output, "--preset", "light", "--iters", "10", "--stop", "off", "--quiet",
        "--snapshots", "every:4", "--reference", clean, "--zoom", "4,4,12,12", "--animate", "--report", "--json",
    )  # fmt: skip
    assert code == 0, err
    folder = tmp_path / "out.snapshots"
    record = json.loads(out)
    assert record["snapshot_dir"] == str(folder) and record["report"] == str(tmp_path / "out.report.html")
    manifest = json.loads((folder / "snapshots.json").read_text())
    assert [s["iteration"] for s in manifest["snapshots"]] == [4, 8, 10]

    # input + 3 snapshots (10 is the last, also returned) + the returned image + the reference = 6 tiles
    width, height, _, _ = sheet_layout(6, (32, 32), zoom=(4, 4, 12, 12))
    assert Image.open(folder / "sheet.png").size == (width, height)
    assert Image.open(folder / "animation.gif").n_frames == 3
    assert Image.open(folder / "curves.png").format == "PNG"

    page = (tmp_path / "out.report.html").read_text()
    parser = _Strict()
    parser.feed(page)
    parser.close()
    assert page.lstrip().lower().startswith("<!doctype html>") and "img" in parser.tags
    assert parser.sources and all(source.startswith("data:image/") for source in parser.sources)
    assert "stop_reason" in page or "stop reason" in page


def test_snapshot_folder_of_an_earlier_run_is_kept_unless_overwrite(capsys, pair, tmp_path):
    noisy, _ = pair
    output = tmp_path / "out.png"
    args = ("restore", noisy, "-o", output, "--preset", "light", "--iters", "6", "--stop", "off", "--quiet")
    assert run(capsys, *args, "--snapshots", "2,4")[0] == 0
    output.unlink()
    code, out, err = run(capsys, *args, "--snapshots", "3")
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err and not output.exists()
    code, _, err = run(capsys, *args, "--snapshots", "3", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out.snapshots").glob("it*")) == ["it000003.png", "it000006.png"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--snapshots", "every:0"), "every:N"),
        (("--snapshots", "50"), "past the run's cap"),
        (("--zoom", "30,30,8,8"), "zoom"),
        (("--snapshot-dir", "x"), "--snapshots"),
    ],
)
def test_bad_snapshot_options_fail_before_the_fit(capsys, pair, tmp_path, extra, words):
    noisy, _ = pair
    output = tmp_path / "out.png"
    code, _, err = run(capsys, "restore", noisy, "-o", output, "--iters", "6", "--stop", "off", "--quiet", *extra)
    assert code != 0 and err.startswith("dip: error:") and err.count("\n") == 1 and words in err
    assert not output.exists() and not (tmp_path / "out.snapshots").exists()


def test_compare_labels_images_and_scores_them_against_a_reference(capsys, pair, tmp_path):
    noisy, clean = pair
    output = tmp_path / "sheet.png"
    code, out, err = run(capsys, "compare", noisy, clean, "--reference", clean, "--labels", "noisy,clean",
                         "-o", output, "--json")  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert [entry["label"] for entry in record["images"]] == ["noisy", "clean"]
    assert record["images"][0]["psnr"] < 30
    assert record["images"][1]["psnr"] == "inf"  # JSON has no infinity: identical images are written as "inf"
    width, height, _, _ = sheet_layout(3, (32, 32))
    assert Image.open(output).size == (width, height)


def test_compare_refuses_images_of_different_sizes(capsys, pair, tmp_path):
    noisy, _ = pair
    small = _save(tmp_path / "small.png", small_image(16))
    output = tmp_path / "sheet.png"
    code, _, err = run(capsys, "compare", noisy, small, "-o", output)
    assert code == 1 and err.count("\n") == 1 and "16x16" in err and "32x32" in err
    assert not output.exists()
    code, _, err = run(capsys, "compare", noisy, small, "--labels", "one", "-o", output)
    assert code == 2 and "--labels" in err
