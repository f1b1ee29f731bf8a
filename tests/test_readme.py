"""The README's "From Python" blocks run as they stand, in order, from the repository's root."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_from_python_snippets_run_and_make_what_they_say(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) == 4
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    made = sorted(os.listdir(tmp_path))
    for name in ("astronaut_restored.png", "astronaut_restored.json", "chelsea_noisy15.png", "chelsea_q20.png",
                 "chelsea_x4.png", "astronaut_sheet.png", "astronaut_it0010.png", "astronaut_it0030.png"):  # fmt: skip
        assert name in made, name
