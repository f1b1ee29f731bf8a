"""dip doctor: what dip would run on, for bug reports."""

from __future__ import annotations

import json

import torch

from conftest import run


def test_doctor_names_the_devices_what_auto_does_on_each_and_the_versions(capsys):
    code, out, err = run(capsys, "doctor", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert {"dip", "torch", "kornia", "pillow", "scikit-image"} <= set(found["versions"])
    assert found["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    cpu = found["devices"][-1]
    assert cpu["device"] == "cpu" and cpu["threads"] == torch.get_num_threads() and cpu["preset"] == "fast-denoise"
    side = int(cpu["largest_whole_image"].split("x")[0])
    assert side > 256 and found["auto_device"] == found["devices"][0]["device"]

    code, out, err = run(capsys, "doctor")
    assert code == 0 and out.startswith("dip ") and "--device auto: " in out and "threads on" in out
