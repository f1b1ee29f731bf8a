"""Progress where stderr is not a terminal (a log file, nohup, a scheduler): plain lines instead of a bar."""

from __future__ import annotations

from dip.io import Picture, write_image

from conftest import run, small_image


def test_a_fit_logs_a_line_at_its_start_and_every_tenth_of_its_steps(capsys, tmp_path):
    write_image(tmp_path / "in.png", Picture(small_image(32), None, 8, "RGB", None))
    options = ["--iters", "20", "--stop", "off", "--preset", "light"]
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "out.png", *options)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/20", *(f"{k}/20" for k in range(2, 22, 2))]
    assert all("loss " in line and "it/s" in line for line in lines[1:])
    assert "left" in lines[-1]

    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "quiet.png", *options, "-q")
    assert code == 0 and err == ""


def test_automatic_stopping_logs_its_statistic_and_a_folder_logs_each_image(capsys, tmp_path):
    folder = tmp_path / "in"
    for name in ("a.png", "b.png"):
        write_image(folder / name, Picture(small_image(32), None, 8, "RGB", None))
    code, out, err = run(capsys, "restore", folder / "a.png", "-o", tmp_path / "a.png", "--iters", "20",
                         "--preset", "light", "--stop", "spread", "--window", "5", "--patience", "100")  # fmt: skip
    assert code == 0, err
    assert "statistic " in [line for line in err.splitlines() if line.startswith("step ")][-1]

    code, out, err = run(capsys, "batch", folder, tmp_path / "out", "--iters", "4", "--stop", "off")
    assert code == 0, err
    images = [line for line in err.splitlines() if line.startswith("image ")]
    assert [line.split(":")[0] for line in images] == ["image 1/2 done", "image 2/2 done"]
    assert "left" in images[-1]
