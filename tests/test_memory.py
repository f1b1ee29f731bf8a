"""The memory estimate: grows with the image and the net, and refuses clearly (naming smaller options) when the
device lacks the memory; an out-of-memory error during the fit gets the same kind of message."""

import numpy as np
import pytest
import torch

import dip.memory
from dip.api import restore
from dip.config import resolve_preset
from dip.errors import DeviceError
from dip.io import Picture
from dip.memory import estimate

from conftest import small_image


def test_estimate_grows_with_the_image_and_the_net():
    paper, light = resolve_preset("paper", "denoise", "cpu"), resolve_preset("light", "denoise", "cpu")
    small, large = estimate(paper, 128, 128, 3), estimate(paper, 256, 256, 3)
    # activations scale with the pixels (4x, a little less as padding weighs less), parameters not at all
    assert 3.5 < large.activations / small.activations <= 4
    assert large.parameters == small.parameters
    assert estimate(light, 256, 256, 3).activations < large.activations / 2
    # the windowed detector keeps W iterates; the exponential one two moments
    emv = estimate(paper.__class__(**{**paper.__dict__, "stop": paper.stop.__class__(rule="emv")}), 256, 256, 3)
    assert emv.detector < large.detector / 10
    # the spread keeps one running average of the iterates, whatever its window
    assert estimate(light, 256, 256, 3).detector == 4 * 3 * 256 * 256


def test_estimate_matches_the_autograd_bytes_of_a_real_forward():
    preset = resolve_preset("light", "denoise", "cpu")
    from dip.nets import build_net, make_input

    net = build_net(preset.net, 3, seed=0)
    z = make_input(preset.net, 40, 40, generator=torch.Generator().manual_seed(0))
    saved = 0

    def count(tensor):
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        net(z)
    assert estimate(preset, 40, 40, 3).activations == saved


def _picture(size=32) -> Picture:
    return Picture(small_image(size), None, 8, "RGB", None)


def test_a_fit_that_cannot_fit_is_refused_before_it_starts_with_smaller_options(monkeypatch):
    monkeypatch.setattr(dip.memory, "available_bytes", lambda device: 2**20)
    with pytest.raises(DeviceError) as refused:
        restore(_picture(), preset="paper", iterations=3)
    message = str(refused.value)
    assert "needs about" in message and "1.0 MiB" not in message and "cpu has 0.0 GiB free" in message
    assert "--preset fast" in message and "--stop spread" in message and "half the size" in message


def test_out_of_memory_during_the_fit_becomes_a_clear_error(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("dip.pipeline.fit", out_of_memory)
    with pytest.raises(DeviceError, match="ran out of memory on cpu; smaller options: --preset fast"):
        restore(_picture(), preset="paper", iterations=3)


def test_the_cli_refusal_is_one_line(capsys, monkeypatch, tmp_path):
    from PIL import Image

    from dip.cli import main

    monkeypatch.setattr(dip.memory, "available_bytes", lambda device: 2**20)
    source = tmp_path / "in.png"
    Image.fromarray((small_image(32) * 255).astype(np.uint8)).save(source)
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", str(source), "-q"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("dip: error:") and err.count("\n") == 1
    assert not (tmp_path / "in.restored.png").exists()
