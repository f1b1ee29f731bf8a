"""The command line as a user meets it: exit codes, one-line errors on stderr, clean stdout, no stray files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run, small_image


def _save(path: Path, pixels: np.ndarray) -> Path:
    array = np.round(pixels * 255).astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    clean = small_image(32)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    mask = np.ones((32, 32), bool)
    mask[10:20, 5:25] = False
    return {
        "clean": _save(tmp_path / "clean.png", clean),
        "noisy": _save(tmp_path / "noisy.png", noisy),
        "mask": _save(tmp_path / "mask.png", mask[..., None].astype(np.float32)),
        "small_mask": _save(tmp_path / "small_mask.png", np.ones((16, 32, 1), np.float32)),
        "empty_mask": _save(tmp_path / "empty_mask.png", np.zeros((32, 32, 1), np.float32)),
    }


FAST = ("--preset", "light", "--iters", "4", "--quiet")


def test_version_and_help_answer_without_importing_torch():
    code = (
        "import sys; from dip.cli import main\ntry: main(sys.argv[1:])\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    commands = ("restore", "degrade", "batch", "compare")
    for args in (["--version"], ["--help"], *([command, "--help"] for command in commands)):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout
    version = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("dip ")


def test_restore_writes_image_and_settings_and_prints_json(capsys, images, tmp_path):
    output = tmp_path / "out" / "restored.png"
    code, out, err = run(
        capsys, "restore", images["noisy"], "-o", output, "--reference", images["clean"], "--json", "--seed", "3", *FAST
    )
    assert code == 0, err
    record = json.loads(out)
    for key in ("input", "output", "task", "iterations", "seconds", "device", "seed", "psnr", "ssim", "input_psnr"):
        assert key in record
    assert record["task"] == "denoise" and record["iterations"] == 4 and record["seed"] == 3
    assert Image.open(output).size == (32, 32)
    assert json.loads((tmp_path / "out" / "restored.png.json").read_text()) == record
    assert err == ""  # no progress bar when stderr is not a terminal


def test_default_output_is_beside_the_input_and_is_never_overwritten(capsys, images):
    code, out, _ = run(capsys, "restore", images["noisy"], *FAST)
    default = images["noisy"].with_name("noisy.restored.png")
    assert code == 0 and default.exists() and str(default) in out
    before = default.read_bytes()
    code, _, err = run(capsys, "restore", images["noisy"], *FAST)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert default.read_bytes() == before
    code, _, _ = run(capsys, "restore", images["noisy"], "--overwrite", "--seed", "1", *FAST)
    assert code == 0 and default.read_bytes() != before


def test_inpainting_with_mask_and_inverted_mask(capsys, images, tmp_path):
    code, out, err = run(
        capsys, "restore", images["noisy"], "--mask", images["mask"], "-o", tmp_path / "a.png", "--json", *FAST
    )
    assert code == 0, err
    assert json.loads(out)["task"] == "inpaint" and json.loads(out)["preset"] == "light-inpaint"
    code, _, err = run(
        capsys, "restore", images["noisy"], "--mask", images["mask"], "--mask-invert", "-o", tmp_path / "b.png", *FAST
    )
    assert code == 0, err


def test_a_mask_of_pixels_dropped_at_random_takes_the_papers_scattered_preset(capsys, images, tmp_path):
    code, _, _ = run(capsys, "degrade", images["clean"], "-o", tmp_path / "d.png", "--drop", "0.5", "--seed", "3")
    assert code == 0
    masked = ("--mask", tmp_path / "d_mask.png")
    paper = ("--preset", "paper", "--iters", "1", "--quiet", "--json")
    code, out, err = run(capsys, "restore", tmp_path / "d.png", *masked, "-o", tmp_path / "r.png", *paper)
    assert code == 0, err
    assert json.loads(out)["preset"] == "paper-scattered"


def test_degrade_makes_each_corruption(capsys, images, tmp_path):
    code, out, _ = run(capsys, "degrade", images["clean"], "-o", tmp_path / "n.png", "--noise", "25", "--json")
    assert code == 0 and json.loads(out)["corruption"] == {"kind": "gaussian", "sigma": 25.0}
    assert 18 < json.loads(out)["psnr"] < 23
    code, out, _ = run(capsys, "degrade", images["clean"], "-o", tmp_path / "d.png", "--drop", "0.5", "--json")
    assert code == 0 and (tmp_path / "d_mask.png").exists()
    mask = np.asarray(Image.open(tmp_path / "d_mask.png"))
    dropped = np.asarray(Image.open(tmp_path / "d.png"))
    assert 0.35 < (mask > 0).mean() < 0.65 and np.all(dropped[mask == 0] == 0)
    code, out, _ = run(capsys, "degrade", images["clean"], "-o", tmp_path / "j.jpg", "--jpeg", "10")
    assert code == 0 and Image.open(tmp_path / "j.jpg").format == "JPEG"
    for name in ("n.png.json", "d.png.json", "j.jpg.json"):
        assert json.loads((tmp_path / name).read_text())["seed"] == 0


def test_degrade_is_reproducible(capsys, images, tmp_path):
    for name in ("a.png", "b.png"):
        assert run(capsys, "degrade", images["clean"], "-o", tmp_path / name, "--noise", "15", "--seed", "9")[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


# --- errors: one line on stderr, exit 2 for a wrong command line, 1 for a failed run, no output file ----------

USAGE, FAILURE = 2, 1


def _text_as_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


def _truncated_png(tmp_path):
    source = tmp_path / "whole.png"
    _save(source, small_image(32))
    path = tmp_path / "truncated.png"
    path.write_bytes(source.read_bytes()[:200])
    return path


@pytest.mark.parametrize(
    "case,args,code,message",
    [
        ("missing input", lambda i, t: ["restore", t / "nope.png"], USAGE, "does not exist"),
        ("folder as input", lambda i, t: ["restore", t], USAGE, "is a folder"),
        ("text named .png", lambda i, t: ["restore", _text_as_png(t)], FAILURE, "notes.png"),
        ("truncated png", lambda i, t: ["restore", _truncated_png(t)], FAILURE, "truncated.png"),
        ("inpaint without mask", lambda i, t: ["restore", i["noisy"], "--task", "inpaint"], USAGE, "--mask"),
        (
            "mask with denoise",
            lambda i, t: ["restore", i["noisy"], "--task", "denoise", "--mask", i["mask"]],
            USAGE,
            "--mask",
        ),
        ("wrong mask size", lambda i, t: ["restore", i["noisy"], "--mask", i["small_mask"]], FAILURE, "32x16"),
        ("empty mask", lambda i, t: ["restore", i["noisy"], "--mask", i["empty_mask"]], FAILURE, "no pixel"),
        ("missing mask", lambda i, t: ["restore", i["noisy"], "--mask", t / "nomask.png"], USAGE, "nomask.png"),
        ("unknown task", lambda i, t: ["restore", i["noisy"], "--task", "deblur"], USAGE, "deblur"),
        ("unknown preset", lambda i, t: ["restore", i["noisy"], "--preset", "quick"], USAGE, "quick"),
        ("zero iterations", lambda i, t: ["restore", i["noisy"], "--iters", "0"], USAGE, "--iters"),
        ("iterations not a number", lambda i, t: ["restore", i["noisy"], "--iters", "many"], USAGE, "--iters"),
        ("negative lr", lambda i, t: ["restore", i["noisy"], "--lr", "-1"], USAGE, "--lr"),
        ("unknown loss", lambda i, t: ["restore", i["noisy"], "--loss", "huber"], USAGE, "huber"),
        ("unknown stop rule", lambda i, t: ["restore", i["noisy"], "--stop", "never"], USAGE, "never"),
        ("window too small", lambda i, t: ["restore", i["noisy"], "--window", "1"], USAGE, "--window"),
        ("zero patience", lambda i, t: ["restore", i["noisy"], "--patience", "0"], USAGE, "--patience"),
        ("noise floor of 1", lambda i, t: ["restore", i["noisy"], "--noise-floor", "1"], USAGE, "--noise-floor"),
        ("unknown noise", lambda i, t: ["restore", i["noisy"], "--noise", "pink"], USAGE, "pink"),
        ("sigma out of range", lambda i, t: ["restore", i["noisy"], "--sigma", "0"], USAGE, "--sigma"),
        (
            "noise model for inpainting",
            lambda i, t: ["restore", i["noisy"], "--mask", i["mask"], "--noise", "impulse"],
            USAGE,
            "--noise",
        ),
        ("unknown option", lambda i, t: ["restore", i["noisy"], "--fast"], USAGE, "--fast"),
        ("unknown device", lambda i, t: ["restore", i["noisy"], "--device", "tpu"], USAGE, "tpu"),
        ("cuda absent", lambda i, t: ["restore", i["noisy"], "--device", "cuda"], FAILURE, "CUDA"),
        ("output is input", lambda i, t: ["restore", i["noisy"], "-o", i["noisy"], "--overwrite"], USAGE, "input"),
        ("unknown output format", lambda i, t: ["restore", i["noisy"], "-o", t / "out.xyz"], USAGE, "out.xyz"),
        (
            "reference of other size",
            lambda i, t: ["restore", i["noisy"], "--reference", i["small_mask"]],
            FAILURE,
            "reference",
        ),
        (
            "degrade: two corruptions",
            lambda i, t: ["degrade", i["clean"], "-o", t / "x.png", "--noise", "5", "--jpeg", "10"],
            USAGE,
            "give one of --noise SIGMA, --drop P, --jpeg Q, --downscale N, --blur SPEC",
        ),
        (
            "degrade: sigma out of range",
            lambda i, t: ["degrade", i["clean"], "-o", t / "x.png", "--noise", "0"],
            USAGE,
            "sigma",
        ),
        (
            "degrade: drop fraction",
            lambda i, t: ["degrade", i["clean"], "-o", t / "x.png", "--drop", "1.5"],
            USAGE,
            "fraction",
        ),
        (
            "degrade: jpeg quality",
            lambda i, t: ["degrade", i["clean"], "-o", t / "x.png", "--jpeg", "0"],
            USAGE,
            "quality",
        ),
    ],
)
def test_bad_input_gets_one_line_and_an_exit_code(capsys, images, tmp_path, case, args, code, message):
    if case == "cuda absent":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    argv = args(images, tmp_path)
    before = set(tmp_path.rglob("*"))
    exit_code, out, err = run(capsys, *argv, "--quiet" if argv[0] == "restore" else "--overwrite")
    assert exit_code == code, err
    assert err.startswith("dip: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err
    assert out == ""
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even a temporary file


def test_unwritable_output_folder(capsys, images, tmp_path):
    if os.geteuid() == 0:
        # root writes anywhere; a path under a regular file is unwritable for everyone.
        target = images["clean"] / "sub" / "out.png"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out.png"
    code, out, err = run(capsys, "restore", images["noisy"], "-o", target, *FAST)
    assert code == FAILURE and err.startswith("dip: error: ") and err.count("\n") == 1
    assert not target.exists()


def test_stop_off_runs_exactly_iters_and_json_tells_where_it_stopped(capsys, images, tmp_path):
    code, out, err = run(
        capsys,
        "restore",
        images["noisy"],
        "-o",
        tmp_path / "off.png",
        "--stop",
        "off",
        "--iters",
        "7",
        "--reference",
        images["clean"],
        "--json",
        "--preset",
        "light",
        "--quiet",
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["iterations"] == record["stopped_at"] == record["best_iteration"] == 7
    assert record["stop_reason"] == "cap" and record["stop"]["rule"] == "off"
    # the peak is the net's; the Wiener filter that finishes a Gaussian denoise may go past it
    net_psnr = record["refinement"]["fit_psnr"] if "refinement" in record else record["psnr"]
    assert record["peak_iteration"] in (1, 7) and record["peak_psnr"] >= net_psnr - 1e-4


def test_stop_options_reach_the_detector(capsys, images, tmp_path):
    code, out, err = run(
        capsys,
        "restore",
        images["noisy"],
        "-o",
        tmp_path / "emv.png",
        "--stop",
        "emv",
        "--patience",
        "3",
        "--window",
        "4",
        "--noise-floor",
        "0.5",
        "--iters",
        "9",
        "--json",
        "--preset",
        "light",
        "--quiet",
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["stop"]["rule"] == "emv" and record["stop"]["patience"] == 3 and record["stop"]["window"] == 4
    assert record["stop"]["cap"] == 9 and record["iterations"] <= 9
    assert record["stop"]["noise_floor"] == 0.5 and record["noise_floor_loss"] > 0


def test_warnings_are_one_plain_line(capsys, tmp_path):
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    code, out, err = run(capsys, "degrade", tmp_path / "anim.gif", "-o", tmp_path / "n.png", "--noise", "10")
    assert code == 0
    assert err.startswith("dip: warning: ") and "first" in err and err.count("\n") == 1


def test_ctrl_c_writes_the_image_so_far_and_exits_130(images, tmp_path):
    import signal
    import time

    output = tmp_path / "interrupted.png"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dip.cli",
            "restore",
            str(images["noisy"]),
            "-o",
            str(output),
            "--preset",
            "light",
            "--stop",
            "off",
            "--iters",
            "1000000",
            "--quiet",
            "--json",
            "--snapshots",
            "every:20",
            "--snapshot-dir",
            str(tmp_path / "snapshots"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    # Signalled once the fit is under way (its first snapshot is written), not after a fixed sleep: on a busy
    # machine the imports alone can take longer than any sleep, and a signal before the handler is a traceback.
    deadline = time.monotonic() + 60
    while not any((tmp_path / "snapshots").glob("it*.png")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    record = json.loads(out)
    assert record["stop_reason"] == "interrupted" and 0 < record["iterations"] < 1000000
    assert Image.open(output).size == (32, 32)
    assert json.loads((tmp_path / "interrupted.png.json").read_text())["stop_reason"] == "interrupted"


@pytest.mark.parametrize(("signal_name", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_with_checkpointing_writes_the_best_image_and_resume_continues(images, tmp_path, signal_name, code):
    import signal
    import time

    output = tmp_path / "run.png"
    checkpoint = tmp_path / "run.png.ckpt"
    command = [sys.executable, "-m", "dip.cli", "restore", str(images["noisy"]), "-o", str(output), *FAST[:2],
               "--stop", "off", "--quiet", "--json", "--checkpoint-every", "20"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*command, "--iters", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment)  # fmt: skip
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(getattr(signal, signal_name))
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    record = json.loads(out)
    stopped = record["iterations"]
    assert record["stop_reason"] == "interrupted" and stopped >= 20
    assert json.loads((tmp_path / "run.png.json").read_text())["stop_reason"] == "interrupted"
    assert checkpoint.is_file()  # saved at the step where the signal was honoured

    resumed = subprocess.run([*command, "--iters", str(stopped + 5), "--resume"], capture_output=True, text=True,
                             env=environment, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["iterations"] == stopped + 5 and record["stop_reason"] == "cap"
    assert not checkpoint.exists()  # complete: nothing left to resume


def test_resume_without_a_checkpoint_is_a_one_line_error(capsys, images, tmp_path):
    code, _, err = run(capsys, "restore", images["noisy"], "-o", tmp_path / "x.png", "--resume", *FAST)
    assert code == 2 and err.count("\n") == 1 and "nothing to resume" in err


@pytest.mark.parametrize("flag, at_once", [("--restarts-at-once", True), ("--restarts-in-turn", False), (None, False)])
def test_restarts_at_once_or_in_turn_is_the_users_choice_and_on_record(capsys, images, tmp_path, flag, at_once):
    args = ["restore", images["noisy"], "-o", tmp_path / "r.png", "--restarts", "2", "--json", "--stop", "off", *FAST]
    code, out, err = run(capsys, *args, *([flag] if flag else []))
    assert code == 0, err
    record = json.loads(out)
    # without the flag, the CPU fits them in turn: stacking gained nothing on a 2-core CPU
    assert record["restarts_at_once"] is at_once and len(record["restarts"]) == 2
