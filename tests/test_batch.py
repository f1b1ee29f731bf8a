"""dip batch: discovery, mask pairing, resume, fault isolation, per-image seeds, and torchrun sharding."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dip.cli
from dip.batch import Job, Shard, discover, image_seed, merge_manifests, read_manifest, run_jobs
from dip.errors import UsageError

from conftest import run, small_image

FAST = ("--preset", "light", "--iters", "3", "--stop", "off", "--quiet")


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


def _noisy(seed: int, size: int = 24) -> np.ndarray:
    return small_image(size) + np.random.default_rng(seed).normal(0, 0.08, (size, size, 3))


@pytest.fixture
def folder(tmp_path) -> Path:
    """Good images at two levels, a corrupt PNG and a text file."""
    root = tmp_path / "in"
    _save(root / "a.png", _noisy(0))
    _save(root / "b.jpg", _noisy(1))
    _save(root / "nested" / "c.png", _noisy(2))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "notes.txt").write_text("not an image")
    return root


def _records(output: Path) -> dict[str, dict]:
    return {record["input"]: record for record in read_manifest(output / "manifest.jsonl")}


def test_folder_run_restores_good_images_records_the_bad_one_and_exits_1(capsys, folder, tmp_path):
    output = tmp_path / "out"
    code, out, err = run(capsys, "batch", folder, output, "--recursive", "--verbose", *FAST)
    assert code == 1
    assert "notes.txt" in err and "broken.png" in err  # listed as ignored / in the failure table
    for name in ("a.png", "b.png", "nested/c.png"):
        assert (output / name).is_file() and (output / (name + ".json")).is_file()
    assert not (output / "broken.png").exists()
    records = _records(output)
    assert set(records) == {"a.png", "b.jpg", "nested/c.png", "broken.png"}
    assert records["broken.png"]["status"] == "failed" and "cannot read" in records["broken.png"]["error"]
    assert records["b.jpg"]["status"] == "done" and records["b.jpg"]["task"] == "jpeg"
    assert "3 done, 0 skipped, 1 failed" in out


def test_without_recursive_subfolders_are_left_alone(capsys, folder, tmp_path):
    output = tmp_path / "out"
    run(capsys, "batch", folder, output, "--glob", "*.png", *FAST)
    assert set(_records(output)) == {"a.png", "broken.png"}


def test_second_run_skips_done_images_without_fitting(capsys, folder, tmp_path, monkeypatch):
    output = tmp_path / "out"
    run(capsys, "batch", folder, output, "-r", *FAST)
    written = {p: p.stat().st_mtime_ns for p in output.rglob("*.png")}

    def no_fitting(*args, **kwargs):
        raise AssertionError("a done image was fitted again")

    monkeypatch.setattr("dip.pipeline.fit", no_fitting)
    code, out, _ = run(capsys, "batch", folder, output, "-r", *FAST)
    assert code == 1 and "0 done, 3 skipped, 1 failed" in out  # the corrupt file fails again, cheaply
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.png")} == written


def test_a_run_killed_mid_image_leaves_no_partial_output_and_resumes(capsys, folder, tmp_path, monkeypatch):
    output = tmp_path / "out"
    real_write = dip.io.write_image
    calls = []

    def killed_while_writing_the_second(path, picture, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C or a kill would, in the middle of an image
        real_write(path, picture, **kwargs)

    monkeypatch.setattr("dip.pipeline.write_image", killed_while_writing_the_second)
    code, _, err = run(capsys, "batch", folder, output, "-r", *FAST)
    assert code == 130 and "resume" in err
    assert (output / "a.png").is_file()
    assert not (output / "b.png").exists() and not (output / "b.png.json").exists()
    assert not [p for p in output.rglob("*") if p.name.startswith(".")]  # no temporary files left behind
    assert set(_records(output)) == {"a.png"}

    monkeypatch.setattr("dip.pipeline.write_image", real_write)
    code, out, _ = run(capsys, "batch", folder, output, "-r", *FAST)
    assert "2 done, 1 skipped, 1 failed" in out
    assert (output / "b.png").is_file() and (output / "nested" / "c.png").is_file()


def test_image_written_without_its_settings_counts_as_not_done(capsys, folder, tmp_path):
    output = tmp_path / "out"
    run(capsys, "batch", folder, output, *FAST)
    (output / "a.png.json").unlink()  # killed between the image and its settings
    _, out, _ = run(capsys, "batch", folder, output, *FAST)
    assert "1 done, 1 skipped, 1 failed" in out


def test_fail_fast_stops_at_the_first_failure(capsys, folder, tmp_path):
    output = tmp_path / "out"
    code, _, _ = run(capsys, "batch", folder, output, "--fail-fast", *FAST)
    assert code == 1
    assert [r["input"] for r in read_manifest(output / "manifest.jsonl")] == ["a.png", "b.jpg", "broken.png"]


def test_masks_pair_by_suffix_and_by_folder(capsys, tmp_path):
    known = np.ones((24, 24, 1), np.float32)
    known[8:16, 4:20] = 0
    inputs = tmp_path / "in"
    _save(inputs / "one.png", _noisy(0))
    _save(inputs / "one_mask.png", known)
    _save(inputs / "two.png", _noisy(1))  # its mask is missing
    output = tmp_path / "out"
    code, _, _ = run(capsys, "batch", inputs, output, "--mask-suffix", "_mask", "--task", "inpaint", *FAST)
    records = _records(output)
    assert code == 1 and set(records) == {"one.png", "two.png"}  # the mask is not an input
    assert records["one.png"]["task"] == "inpaint"
    assert records["two.png"]["status"] == "failed" and "no mask" in records["two.png"]["error"]

    # with --task auto the folder may mix work: the image without a mask is denoised
    shutil.rmtree(output)
    code, _, err = run(capsys, "batch", inputs, output, "--mask-suffix", "_mask", *FAST)
    records = _records(output)
    assert code == 0, err
    assert records["one.png"]["task"] == "inpaint" and records["two.png"]["task"] == "denoise"

    masks = tmp_path / "masks"
    _save(masks / "one.png", known)
    _save(masks / "two.png", known)
    shutil.rmtree(output)
    code, _, err = run(capsys, "batch", inputs, output, "--masks", masks, "--glob", "[ot][nw]?.png", *FAST)
    assert code == 0, err
    records = _records(output)
    assert set(records) == {"one.png", "two.png"} and all(r["task"] == "inpaint" for r in records.values())


def test_seeds_depend_on_the_path_not_the_order_or_the_shard(tmp_path, folder):
    jobs = discover(folder, tmp_path / "out", recursive=True, seed=7).jobs
    assert [job.name for job in jobs] == ["a.png", "b.jpg", "broken.png", "nested/c.png"]
    assert {job.name: job.seed for job in jobs} == {job.name: image_seed(7, job.relative) for job in jobs}
    assert len({job.seed for job in jobs}) == len(jobs)
    shards = [Shard(rank, 3).take(jobs) for rank in range(3)]
    assert sorted(job.name for share in shards for job in share) == sorted(job.name for job in jobs)
    only_some = discover(folder, tmp_path / "out", pattern="b.*", seed=7).jobs
    assert only_some[0].seed == next(job.seed for job in jobs if job.name == "b.jpg")
    assert image_seed(8, Path("a.png")) != image_seed(7, Path("a.png"))


def test_per_image_results_do_not_depend_on_what_else_is_in_the_folder(capsys, folder, tmp_path):
    run(capsys, "batch", folder, tmp_path / "all", "-r", *FAST)
    run(capsys, "batch", folder, tmp_path / "one", "--glob", "a.png", *FAST)
    first = np.asarray(Image.open(tmp_path / "all" / "a.png"))
    alone = np.asarray(Image.open(tmp_path / "one" / "a.png"))
    np.testing.assert_array_equal(first, alone)


def test_bad_folder_arguments_are_one_line_errors(capsys, folder, tmp_path):
    for args, words in (
        (("batch", tmp_path / "missing", tmp_path / "out"), "does not exist"),
        (("batch", folder, folder), "input folder"),
        (("batch", folder), "the input and the output folder"),
        (("batch", folder, tmp_path / "o", "--masks", tmp_path, "--mask-suffix", "_m"), "not both"),
    ):
        code, _, err = run(capsys, *args, *FAST)
        assert code == 2 and err.count("\n") == 1 and words in err, err


def test_jobs_with_a_known_problem_fail_without_fitting(tmp_path):
    job = Job(tmp_path / "x.png", Path("x.png"), tmp_path / "out" / "x.png", problem="no mask beside it")
    records = list(run_jobs([job], lambda job: pytest.fail("fitted"), manifest=tmp_path / "m.jsonl"))
    assert records[0]["status"] == "failed" and records[0]["error"] == "no mask beside it"


def test_shard_reads_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert Shard.from_environment() == Shard(1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UsageError, match="RANK"):
        Shard.from_environment()


def test_merge_collects_parts_into_one_manifest(tmp_path):
    for rank in range(2):
        part = Shard(rank, 2).manifest(tmp_path)
        part.write_text(json.dumps({"input": f"{rank}.png", "status": "done", "started": rank}) + "\n")
    assert merge_manifests(tmp_path) == 2
    assert [r["input"] for r in read_manifest(tmp_path / "manifest.jsonl")] == ["0.png", "1.png"]
    assert not list(tmp_path.glob("manifest.part-*"))


def test_torchrun_two_processes_do_each_image_once_and_match_one_process(tmp_path):
    inputs = tmp_path / "in"
    for k, name in enumerate(("a.png", "b.png", "c.png", "sub/d.png", "sub/e.png")):
        _save(inputs / name, _noisy(k, 16))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default per process; one process matches it
    common = ["batch", str(inputs), None, "-r", *FAST]

    def dip_batch(launcher: list[str], output: Path) -> subprocess.CompletedProcess:
        args = [str(output) if a is None else a for a in common]
        return subprocess.run([*launcher, *args], capture_output=True, text=True, env=environment, timeout=300)

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dip.cli"]
    done = dip_batch(torchrun, tmp_path / "two")
    assert done.returncode == 0, done.stderr[-2000:]
    single = dip_batch([sys.executable, "-m", "dip.cli"], tmp_path / "one")
    assert single.returncode == 0, single.stderr[-2000:]

    records = read_manifest(tmp_path / "two" / "manifest.jsonl")
    assert sorted(r["input"] for r in records) == ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png"]
    assert all(r["status"] == "done" for r in records) and {r["rank"] for r in records} == {0, 1}
    assert not list((tmp_path / "two").glob("manifest.part-*"))
    for record in records:
        two = np.asarray(Image.open(tmp_path / "two" / record["output"]))
        one = np.asarray(Image.open(tmp_path / "one" / record["output"]))
        np.testing.assert_array_equal(two, one)


def test_references_put_scores_into_the_manifest(capsys, tmp_path):
    inputs, references = tmp_path / "in", tmp_path / "clean"
    _save(inputs / "one.png", _noisy(0))
    _save(inputs / "two.png", _noisy(1))
    _save(references / "one.png", small_image(24))  # two has no reference: restored, not scored
    output = tmp_path / "out"
    code, _, err = run(capsys, "batch", inputs, output, "--references", references, *FAST)
    assert code == 0, err
    records = _records(output)
    assert records["one.png"]["input_psnr"] < 30 and "psnr" in records["one.png"]
    assert "psnr" not in records["two.png"] and records["two.png"]["status"] == "done"
    assert json.loads((output / "one.png.json").read_text())["reference"].endswith("one.png")


def test_parallel_fits_give_each_image_its_single_fit_result(capsys, folder, tmp_path):
    # one net per image, fitted side by side; oneDNN's grouped kernels sum in another order, and Adam's first
    # steps amplify that (see tests/test_parallel.py), so images agree closely rather than bit for bit
    run(capsys, "batch", folder, tmp_path / "one", "-r", *FAST)
    code, out, err = run(capsys, "batch", folder, tmp_path / "three", "-r", "--parallel", "3", *FAST)
    assert code == 1 and "3 done, 0 skipped, 1 failed" in out, err
    for name in ("a.png", "b.png", "nested/c.png"):
        one = np.asarray(Image.open(tmp_path / "one" / name), dtype=float)
        three = np.asarray(Image.open(tmp_path / "three" / name), dtype=float)
        assert np.abs(one - three).mean() < 2.0  # in 8-bit levels
    records = _records(tmp_path / "three")
    assert records["broken.png"]["status"] == "failed"


def test_parallel_and_snapshots_do_not_go_together(capsys, folder, tmp_path):
    code, _, err = run(capsys, "batch", folder, tmp_path / "o", "--parallel", "2", "--snapshots", "log:2", *FAST)
    assert code == 2 and "--parallel" in err
