"""Large images: tiles and their crossfade, windows around holes, the known pixels kept, the layout chosen from
memory, torchrun sharing one image's tiles, and the estimate."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import dip.layout
from dip.config import FitConfig, NetConfig, Preset, StopConfig
from dip.errors import UsageError
from dip.io import Picture, write_image
from dip.layout import Layout
from dip.pipeline import prepare, solve
from dip.report import sidecar_path
from dip.split import solve_split
from dip.tiles import Blend, Box, crossfade, hole_windows, seams, spans, tile_boxes

from conftest import run, small_image

_NET = NetConfig(scales=3, channels_down=8, channels_up=8, channels_skip=2, input_depth=4)


def _preset(iterations: int = 20, stop: str = "off") -> Preset:
    return Preset("test", "test", _NET, FitConfig(iterations=iterations, reg_noise_std=1 / 30),
                  StopConfig(rule=stop, window=10, patience=10, warmup=5, cap=iterations))  # fmt: skip


def _picture(pixels: np.ndarray) -> Picture:
    return Picture(pixels, None, 8, "RGB", None)


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 400),
    tile=st.integers(32, 160),
    overlap=st.integers(0, 24),
    grid=st.sampled_from([1, 16]),
)
def test_spans_cover_the_length_exactly_with_the_overlap_on_the_grid(length, tile, overlap, grid):
    assume(tile - overlap >= grid)
    found = spans(length, tile, overlap, grid)
    covered = np.zeros(length, int)
    for start, size in found:
        assert start % grid == 0 and 0 <= start and start + size <= length
        assert size <= tile + grid - 1
        covered[start : start + size] += 1
    assert covered.min() >= 1
    assert found[-1][0] + found[-1][1] == length
    for (a, a_size), (b, _) in zip(found, found[1:], strict=False):
        assert a + a_size - b >= overlap and b > a


def test_blend_weights_sum_to_one_and_cut_boxes_blend_back_to_the_image():
    rng = np.random.default_rng(0)
    height, width = 150, 170
    boxes = tile_boxes(height, width, 64, 12)
    weights = [np.zeros((height, width)) for _ in boxes]
    for box, weight in zip(boxes, weights, strict=True):
        weight[box.slices()] = crossfade(box, height, width, 12)
    total = sum(weights)
    assert total.min() > 0
    np.testing.assert_allclose(sum(w / total for w in weights), 1.0, atol=1e-12)
    image = rng.random((3, height, width)).astype(np.float32)
    blend = Blend(np.zeros_like(image), ramp=12)
    for box in boxes:
        blend.add(box, image[:, box.slices()[0], box.slices()[1]])
    np.testing.assert_allclose(blend.image(), image, atol=1e-6)
    assert all(pair["rms"] == 0 and pair["max"] == 0 for pair in seams(boxes, [image[:, b.top : b.bottom,
               b.left : b.right] for b in boxes]))  # fmt: skip


def test_seams_measure_how_much_neighbours_disagree():
    boxes = [Box(0, 0, 10, 20), Box(0, 12, 10, 20)]
    images = [np.zeros((1, 10, 20), np.float32), np.full((1, 10, 20), 0.25, np.float32)]
    (pair,) = seams(boxes, images)
    assert pair["boxes"] == [0, 1] and pair["overlap"] == [12, 0, 8, 10]
    assert pair["rms"] == pytest.approx(0.25) and pair["max"] == pytest.approx(0.25)


def _covered_with_margin(known: np.ndarray, windows: list[Box], margin: int) -> bool:
    """Every hole pixel lies in a window at least ``margin`` from each of its edges inside the image."""
    height, width = known.shape
    for y, x in zip(*np.nonzero(~known), strict=True):
        if not any(
            (y - w.top >= margin or w.top == 0) and (w.bottom - 1 - y >= margin or w.bottom == height)
            and (x - w.left >= margin or w.left == 0) and (w.right - 1 - x >= margin or w.right == width)
            for w in windows
        ):  # fmt: skip
            return False
    return True


def test_windows_cover_every_hole_with_its_margin_and_cut_long_scratches():
    known = np.ones((300, 400), bool)
    known[40:46, 50:60] = False  # a spot
    known[5:9, 390:400] = False  # at the border: no context beyond it
    known[200, 20:380] = False  # a long scratch
    known[100:104, 300:303] = False
    windows = hole_windows(known, margin=10, window=96)
    assert _covered_with_margin(known, windows, 10)
    assert all(w.top >= 0 and w.left >= 0 and w.bottom <= 300 and w.right <= 400 for w in windows)
    assert all(w.height <= 96 and w.width <= 96 for w in windows)
    assert sum(w.area for w in windows) < 0.4 * known.size  # only where the holes are
    assert hole_windows(np.ones((20, 20), bool), 10, 96) == []


def test_the_layout_tiles_only_what_does_not_fit_and_keeps_the_jpeg_grid(monkeypatch):
    noisy = _picture(small_image(96))
    assert not prepare(noisy, preset=_preset()).split
    plan = prepare(noisy, task="jpeg", preset=_preset(), tile=40, tile_overlap=6)
    boxes = plan.layout.boxes
    assert plan.layout.kind == "tiles" and all(box.top % 16 == 0 and box.left % 16 == 0 for box in boxes)
    # whole 8x8 blocks of the 16-pixel chroma grid: a tile ends on the grid or at the image's edge
    assert all(box.bottom % 16 == 0 or box.bottom == 96 for box in boxes)
    assert all(box.right % 16 == 0 or box.right == 96 for box in boxes)
    # a device with room for a 64-px fit but not for the whole 400-px one: auto tiles, and says why
    large = _picture(np.random.default_rng(0).random((400, 400, 3)).astype(np.float32))
    one_tile, whole = (dip.memory.estimate(_preset(), size, size, 3).total for size in (64, 400))
    free = int(one_tile / dip.layout.MEMORY_SHARE) + 1
    assert whole > free
    monkeypatch.setattr(dip.memory, "available_bytes", lambda device: free)
    monkeypatch.setattr(dip.layout, "CPU_TILE", 64)
    plan = prepare(large, preset=_preset())
    assert plan.layout.kind == "tiles" and "does not fit" in plan.layout.reason
    assert {box.size for box in plan.layout.boxes} == {(64, 64)}
    with pytest.raises(dip.errors.DeviceError, match="needs about"):
        prepare(large, preset=_preset(), tile=0)


def test_a_tile_as_large_as_the_image_gives_the_untiled_result():
    noisy = _picture(small_image(40))
    whole = solve(prepare(noisy, preset=_preset(15), tile=0))
    plan = prepare(noisy, preset=_preset(15), tile=0)
    one_tile = dataclasses.replace(plan, layout=Layout("tiles", (Box(0, 0, 40, 40),), 40, 8))
    tiled = solve_split(one_tile)
    assert torch.equal(tiled.result.image, whole.result.image)
    assert tiled.split["regions"][0]["box"] == [0, 0, 40, 40] and tiled.split["seams"]["pairs"] == []


def test_tiled_denoising_records_every_tile_and_its_seams(capsys, tmp_path):
    write_image(tmp_path / "in.png", _picture(small_image(72)))
    options = ["--iters", "12", "--stop", "off", "--preset", "light", "--tile", "40", "--tile-overlap", "8", "--json"]
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "out.png", *options)
    assert code == 0, err
    assert "72x72: fitting 4 tiles of up to 40x40 (--tile 40)" in err
    record = json.loads(out)
    split = record["split"]
    assert (split["kind"], split["count"], split["fitted"], split["overlap"]) == ("tiles", 4, 4, 8)
    assert [r["box"] for r in split["regions"]] == [[0, 0, 40, 40], [32, 0, 40, 40], [0, 32, 40, 40],
                                                    [32, 32, 40, 40]]  # fmt: skip
    assert all(r["stopped_at"] == 12 and r["stop_reason"] == "cap" for r in split["regions"])
    assert 0 < split["seams"]["rms"] <= split["seams"]["max"] and len(split["seams"]["pairs"]) == 6
    assert Image.open(tmp_path / "out.png").size == (72, 72)


def test_tiled_super_resolution_tiles_the_input_and_keeps_the_scale_grid():
    from dip.degradations import through_operator
    from dip.operators import Downsample

    low = through_operator(small_image(96), Downsample(3))  # 32 x 32
    plan = prepare(_picture(low), scale=3, preset=_preset(6), tile=48, tile_overlap=6)
    assert plan.layout.kind == "tiles" and plan.layout.overlap == 6
    assert all(box.height == 16 for box in plan.layout.boxes)  # 48 output pixels: 16 of the input
    restored = solve(plan)
    assert restored.picture.pixels.shape == (96, 96, 3)
    boxes = [region["box"] for region in restored.split["regions"]]
    assert all(value % 3 == 0 for box in boxes for value in box) and {box[2] for box in boxes} == {48}


def _scratched(size: int = 96):
    clean = small_image(size)
    known = np.ones((size, size), bool)
    known[size // 8 : size // 8 + 3, size // 10 : size // 10 + 30] = False  # a scratch
    known[-size // 5 : -size // 5 + 4, -size // 5 : -size // 5 + 4] = False  # a spot, far from it
    return clean, known, np.where(known[..., None], clean, 1.0).astype(np.float32)


def test_inpainting_fits_windows_and_keeps_every_known_pixel_bit_for_bit(capsys, tmp_path):
    clean, known, damaged = _scratched(160)
    write_image(tmp_path / "in.png", _picture(damaged))
    write_image(tmp_path / "mask.png", Picture(known[..., None].astype(np.float32), None, 8, "L", None))
    common = ["--mask", tmp_path / "mask.png", "--iters", "10", "--preset", "light", "--json", "-q"]
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "out.png", *common)
    assert code == 0, err
    record = json.loads(out)
    assert record["keep_known"] is True and record["split"]["kind"] == "windows"
    assert record["split"]["count"] == 2 and record["split"]["margin"] == dip.layout.WINDOW_MARGIN
    written = np.asarray(Image.open(tmp_path / "out.png"))
    given = np.asarray(Image.open(tmp_path / "in.png"))
    np.testing.assert_array_equal(written[known], given[known])
    assert not np.array_equal(written[~known], given[~known])  # the holes were filled

    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "net.png", "--no-keep-known",
                         *common)  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["keep_known"] is False and "split" not in record  # the net's image everywhere: one whole fit
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "net.png"))[known], given[known])


def test_windows_fill_the_holes_about_as_well_as_the_whole_fit():
    clean, known, damaged = _scratched(64)
    preset = dataclasses.replace(_preset(100), net=NetConfig(scales=4, channels_down=16, channels_up=16,
                                                             channels_skip=4, input_depth=8))  # fmt: skip
    whole = solve(prepare(_picture(damaged), mask=known, preset=preset, tile=0))
    windowed = solve(prepare(_picture(damaged), mask=known, preset=preset, tile=48))
    assert windowed.split["kind"] == "windows"

    def error(image):
        return float(np.mean((image.picture.pixels[~known] - clean[~known]) ** 2))

    assert error(windowed) < 1.5 * error(whole)
    assert error(windowed) < 0.5 * float(np.mean((damaged[~known] - clean[~known]) ** 2))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tile", "10"], "--tile 10 is too small"),
        (["--tile", "big"], "--tile must be auto, 0 or a size"),
        (["--tile", "40", "--tile-overlap", "20"], "--tile-overlap 20 is too large for --tile 40"),
        (["--tile", "40", "--tile-overlap", "-1"], "--tile-overlap must be 0 or more"),
        (["--keep-known"], "--keep-known applies to inpainting"),
        (["--tile", "40", "--snapshots", "every:2"], "snapshots need one fit of the whole image"),
        (["--tile", "40", "--restarts", "2"], "restarts need one fit of the whole image"),
    ],
)
def test_bad_tile_options_are_one_line_errors(capsys, tmp_path, args, message):
    write_image(tmp_path / "in.png", _picture(small_image(64)))
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "out.png", "--iters", "2", "-q",
                         *args)  # fmt: skip
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_the_estimate_says_what_the_run_would_do_and_writes_nothing(capsys, tmp_path):
    write_image(tmp_path / "in.png", _picture(small_image(64)))
    before = sorted(tmp_path.iterdir())
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "--tile", "40", "--preset", "light", "--estimate",
                         "--json")  # fmt: skip
    assert code == 0, err
    found = json.loads(out)
    assert found["layout"]["kind"] == "tiles" and found["fits"] == 4 and found["steps"] == 2000
    assert found["seconds"] == pytest.approx(found["seconds_per_step"] * 2000 * 4, rel=0.02)
    assert found["needed_bytes"] > 0 and "a GPU" in found["faster"]
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "--estimate")
    assert code == 0 and out.startswith("64x64 denoise with light-denoise on cpu, whole:") and "s a step" in out
    assert sorted(tmp_path.iterdir()) == before


def test_torchrun_two_processes_share_the_tiles_and_write_what_one_process_writes(capsys, tmp_path):
    write_image(tmp_path / "in.png", _picture(small_image(72)))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    options = ["restore", str(tmp_path / "in.png"), "--iters", "8", "--stop", "off", "--preset", "light",
               "--tile", "40", "-q", "-o"]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dip.cli"]
    two = subprocess.run([*torchrun, *options, str(tmp_path / "two.png")], capture_output=True, text=True,
                         env=environment, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    # one process, in this one (one thread, as torchrun gives each of its processes)
    code, out, err = run(capsys, *options, tmp_path / "one.png")
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "two.png")),
                                  np.asarray(Image.open(tmp_path / "one.png")))  # fmt: skip
    record = json.loads(sidecar_path(tmp_path / "two.png").read_text())
    assert record["split"]["processes"] == 2 and record["split"]["fitted"] == record["split"]["count"] == 9


def test_a_tiled_run_interrupted_writes_a_whole_image_with_the_input_where_no_fit_ended():
    import threading

    noisy = small_image(72)
    plan = prepare(_picture(noisy), preset=_preset(10), tile=40, tile_overlap=8)
    interrupt = threading.Event()
    calls = []

    def stop_after_first(done, total, box):
        calls.append(done)
        if done == 1:
            interrupt.set()

    restored = solve(plan, interrupt=interrupt, on_region=stop_after_first)
    assert restored.result.stop_reason == "interrupted" and restored.split["fitted"] < 4
    pixels = restored.picture.pixels
    assert pixels.shape == noisy.shape and np.isfinite(pixels).all()
    np.testing.assert_array_equal(pixels[-8:, -8:], noisy[-8:, -8:])  # the last tile never ran: the input


def test_usage_errors_name_the_layout():
    plan = prepare(_picture(small_image(72)), preset=_preset(), tile=40)
    with pytest.raises(UsageError, match="fitted in 9 tiles of up to 40x40"):
        solve(plan, checkpoint="x.ckpt")


def test_tiles_of_one_size_fitted_at_once_give_what_they_give_in_turn():
    # what a GPU does with the free memory for K fits: the stacked net, each tile its own result
    plan = prepare(_picture(small_image(72)), preset=_preset(8), tile=40, tile_overlap=8)
    in_turn = solve_split(plan)
    at_once = solve_split(dataclasses.replace(plan, layout=dataclasses.replace(plan.layout, at_once=3)))
    assert at_once.split["at_once"] == 3 and at_once.split["fitted"] == 4  # a group of 3 and one alone
    # equal up to the order of floating-point sums, which a few steps of Adam carry into the third decimal
    difference = np.abs(at_once.picture.pixels - in_turn.picture.pixels)
    assert difference.max() < 2e-2 and difference.mean() < 1e-3  # tiles mixed up would differ by about 0.1


def test_deblurring_tiles_overlap_by_at_least_the_kernel_reach():
    plan = prepare(_picture(small_image(96)), blur="gaussian:3", preset=_preset(), tile=48, tile_overlap=2)
    assert plan.layout.kind == "tiles" and plan.layout.overlap == 9  # a 19-pixel kernel reaches 9 either side
    boxes = plan.layout.boxes
    assert all(a.intersection(b) is None or min(a.intersection(b).size) >= 9 for a in boxes for b in boxes)
