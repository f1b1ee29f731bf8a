"""Ways of computing a step (memory layout, compilation, reduced precision) compute the plain step's function."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from dip.config import resolve_preset
from dip.nets import build_net, crop_to, make_input
from dip.operators import Observation
from dip.steps import compute_forward

from conftest import small_image


def _forward_and_gradients(device: str, size: int = 24, **variant) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One step's forward output and the gradients of its loss, from the same weights and input."""
    preset = resolve_preset("light", "denoise", "cpu")
    cfg = replace(preset.fit, **variant)
    y = torch.from_numpy(small_image(size).transpose(2, 0, 1).copy())[None].to(device)
    net = build_net(preset.net, 3, seed=0).to(device)
    z = make_input(preset.net, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    if cfg.channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    x = crop_to(compute_forward(net, z, cfg)(z), size, size).float()
    Observation(y).loss(x, cfg.loss).backward()
    return x.detach().cpu(), [p.grad.detach().cpu() for p in net.parameters()]


def _assert_same_function(variant: dict, device: str = "cpu", *, output: float, gradient: float) -> None:
    """The same output (relative error at most ``output``) and gradients (cosine similarity at least ``gradient``).

    Gradients are compared as one vector: the biases of convolutions followed by BatchNorm have a gradient that
    is zero in exact arithmetic, so tensor by tensor they compare rounding noise. Whole fits are not compared:
    Adam's first steps move each weight by about lr * sign(gradient), so a rounding difference in a gradient
    near zero flips a sign and the trajectories part, for any two ways of summing.
    """
    plain_x, plain_grads = _forward_and_gradients("cpu")
    x, grads = _forward_and_gradients(device, **variant)
    assert x.dtype == torch.float32
    assert (x - plain_x).norm() <= output * plain_x.norm()
    plain_vector, vector = torch.cat([g.flatten() for g in plain_grads]), torch.cat([g.flatten() for g in grads])
    assert torch.nn.functional.cosine_similarity(plain_vector, vector, dim=0) >= gradient


def test_channels_last_computes_the_plain_function():
    _assert_same_function({"channels_last": True}, output=1e-5, gradient=0.99999)


def test_bf16_autocast_computes_the_plain_function_to_bf16_precision():
    # bf16 keeps 8 bits of mantissa: outputs agree to about 3 %, and gradients through BatchNorm, which subtracts
    # means, lose more (cosine 0.90 measured); whether fits still converge is measured, not assumed (speed.py).
    _assert_same_function({"precision": "bf16"}, output=0.05, gradient=0.8)


@pytest.mark.slow  # compiling takes tens of seconds on a small CPU
def test_compiled_forward_computes_the_plain_function():
    _assert_same_function({"compile": True}, output=1e-5, gradient=0.99999)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("variant", "output", "gradient"),
    [
        ({}, 1e-3, 0.999),
        ({"channels_last": True}, 1e-3, 0.999),
        ({"compile": True}, 1e-3, 0.999),
        ({"precision": "bf16"}, 0.05, 0.8),
    ],
)
def test_gpu_variants_compute_the_cpu_function(variant, output, gradient):
    # TF32 and cuDNN's algorithms round differently from the CPU's; the tolerances cover that
    _assert_same_function(variant, "cuda", output=output, gradient=gradient)


def test_thread_policy_is_set_before_torch_loads_and_respects_the_user():
    check = "import os, dip, torch; print(os.environ['OMP_WAIT_POLICY'])"
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=environment)
    assert done.stdout.strip() == "PASSIVE", done.stderr
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env={**environment, "OMP_WAIT_POLICY": "ACTIVE"}
    )
    assert done.stdout.strip() == "ACTIVE"
