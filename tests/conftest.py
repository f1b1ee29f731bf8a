"""Small, seeded, single-threaded: the suite must stay fast on a 2-core machine with other work running."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def small_image(size: int = 48, *, gray: bool = False) -> np.ndarray:
    """A real photograph (scikit-image's astronaut, shipped with the package) at ``size`` px, float32 (H, W, C)."""
    from skimage import color, data, transform

    image = data.astronaut()[30:330, 100:400]  # the face and the flag: edges and flat areas at small sizes
    image = transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32)
    if gray:
        image = color.rgb2gray(image)[..., None].astype(np.float32)
    return image


@pytest.fixture
def clean48() -> np.ndarray:
    return small_image(48)


def run(capsys, *args: object) -> tuple[int, str, str]:
    """The `dip` command as a user runs it, in-process: (exit code, stdout, stderr)."""
    from dip.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
