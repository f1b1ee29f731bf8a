"""The HTML report in a real browser: headless Chromium loads the page, every picture decodes, no script or
resource fails. Skipped, saying so, where no Chromium is installed (.ci/run installs it where it can)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from dip.io import Picture, write_image

from conftest import run, small_image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Before anything else on the page: every error (script, or a resource that fails to load) is kept.
WATCH = (
    "<script>window.__errors=[];addEventListener('error',"
    "e=>__errors.push(String(e.message||e.target.src||e.target.href)),true);</script>"
)
# Once the page has loaded: what the browser made of its pictures, written into the DOM for --dump-dom.
CHECK = """<script>addEventListener('load',()=>{const pictures=[...document.images];
document.body.setAttribute('data-check',JSON.stringify({count:pictures.length,
broken:pictures.filter(p=>!(p.complete&&p.naturalWidth>0)).map(p=>p.alt),errors:__errors}))});</script>"""


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed: the report's browser check is skipped")
def test_the_report_loads_in_headless_chromium_with_every_picture_and_no_error(capsys, tmp_path):
    write_image(tmp_path / "in.png", Picture(small_image(32), None, 8, "RGB", None))
    write_image(tmp_path / "clean.png", Picture(small_image(32), None, 8, "RGB", None))
    code, out, err = run(capsys, "restore", tmp_path / "in.png", "-o", tmp_path / "out.png", "--iters", "12",
                         "--stop", "off", "--preset", "light", "--report", "--animate", "--reference",
                         tmp_path / "clean.png", "-q")  # fmt: skip
    assert code == 0, err
    page = (tmp_path / "out.report.html").read_text(encoding="utf-8")
    watched = page.replace("<head>", "<head>" + WATCH, 1).replace("</body>", CHECK + "</body>", 1)
    assert watched.count("__errors") >= 2, "the report has no <head> or </body> to watch"
    (tmp_path / "watched.html").write_text(watched, encoding="utf-8")
    done = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
         (tmp_path / "watched.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"data-check=\"([^\"]*)\"", done.stdout)
    assert found is not None, "the page never finished loading"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["count"] == page.count("<img ") >= 3  # the sheet, the curves, the animation
    assert check["broken"] == [] and check["errors"] == []
