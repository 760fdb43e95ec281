"""Open report.html in headless Chromium as a reader would: every figure must load and the page must not be blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dstune.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
)
# Test-only probe appended to a copy of the page: records each image's decoded size in the DOM.
PROBE = (
    "<script>window.addEventListener('load', () => document.querySelectorAll('img').forEach("
    "i => i.setAttribute('data-decoded', i.naturalWidth + 'x' + i.naturalHeight)));</script>"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["report", "compare"])
def test_page_loads_with_its_figures(command: str, profile_study: Path, sim_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(profile_study)]
    if command == "compare":
        args = [str(sim_study), str(profile_study), "--gpu-hour-price", "2"]
    assert main([command, *args, "--out", str(out), "--format", "html"]) == 0
    page = out / f"{command}.html"
    probe = out / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    sizes = [tuple(map(int, s.split("x"))) for s in re.findall(r'data-decoded="(\d+x\d+)"', dom)]
    expected = page.read_text().count("<img ")
    assert expected >= 1 and len(sizes) == expected, dom[-2000:]
    assert all(w >= 300 and h >= 150 for w, h in sizes), sizes

    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 4000)
    top = image.crop((0, 0, 1280, 1600))
    assert top.getextrema()[0] < 80  # dark text / plot ink on the visible part of the page, not a blank sheet
    histogram = top.histogram()
    assert sum(histogram[:200]) > 0.01 * sum(histogram)  # more than a few stray pixels are not white
