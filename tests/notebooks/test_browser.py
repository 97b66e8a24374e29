"""A real browser: Voilà serves a notebook with a live monitor; Chromium (Playwright) watches it.

The overall progress bar's width grows while the execution runs, the final state shows
"completed" (in the rows, and in the graph and timeline), a screenshot is written, and every
request of ours stays on 127.0.0.1 (Voilà's page template asks a CDN for Font Awesome's CSS: that
one is not ours and is the only exception).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

BAR = ".zmqmon-monitor .zmqmon-overall .progress-bar"
NOTEBOOK = [
    "import zmqmon\nexecutor = zmqmon.Executor()",
    "def agent(i, name, seconds, *deps):\n"
    "    return {'id': i, 'name': name, 'uses': 'zmqmon.demo:work',\n"
    "            'params': {'seconds': seconds, 'steps': 20}, 'dependsOn': list(deps)}\n"
    "workflow = {'name': 'Browser Pipeline', 'agents': [\n"
    "    agent('fetch', 'Fetcher', 2.0), agent('summarize', 'Summarizer', 3.0, 'fetch'),\n"
    "    agent('translate', 'Translator', 2.0, 'fetch'),\n"
    "    agent('publish', 'Publisher', 1.5, 'summarize', 'translate')]}",
    "execution = executor.submit(workflow)\nexecution",
]


def _is_ours(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:"))


def _voila_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=1):
            return True
    except OSError as exc:
        return getattr(exc, "code", None) is not None  # any HTTP answer means it is up


def test_progress_grows_live_in_chromium(jupyter_env: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    path = tmp_path / "live.ipynb"
    nb = new_notebook(cells=[new_code_cell(c) for c in NOTEBOOK])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    port = free_port()
    voila = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("voila")),
            str(path),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--VoilaConfiguration.extension_denylist=['@jupyter-notebook/lab-extension']",
        ],
        cwd=tmp_path,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "voila.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        wait_for(lambda: _voila_up(port), 30, 0.1, message="voila to listen")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            bar = page.locator(BAR).first
            bar.wait_for(state="attached", timeout=60_000)

            def width() -> float:
                return float(bar.evaluate("e => parseFloat(e.style.width) || 0"))

            first = wait_for(lambda: width() or None, 30, 0.05, message="the bar to move")
            mid = wait_for(lambda: max(width(), first) - first, 30, 0.05, message="growth") + first
            assert first < mid < 100, "the bar must grow while the execution runs"
            badge = page.locator(".zmqmon-monitor .zmqmon-badge").first
            wait_for(lambda: badge.inner_text() == "completed", 40, 0.1, message="completed")
            wait_for(lambda: width() == 100, 10, 0.05, message="a full bar")
            rows = page.locator(".zmqmon-monitor .widget-hprogress .progress-bar")
            assert rows.count() == 5  # the overall bar + one per agent
            # the graph and timeline (inline SVG): four agents, all completed, four bars
            nodes = page.locator(".zmqmon-monitor .zmqmon-views .zm-node.zm-s-completed")
            wait_for(lambda: nodes.count() == 4, 10, 0.1, message="the graph, completed")
            assert page.locator(".zmqmon-monitor .zmqmon-views .zm-bar").count() == 4
            assert page.locator(".zmqmon-monitor button").first.is_disabled()
            shot = tmp_path / "monitor.png"
            page.locator(".zmqmon-monitor").first.screenshot(path=str(shot))
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            assert shot.stat().st_size > 5_000
            shutil.copy(shot, Path(tempfile.gettempdir()) / "zmqmon-voila-monitor.png")
            browser.close()
        foreign = [u for u in requests if not _is_ours(u)]
        # Voilà's template asks a CDN for Font Awesome's CSS: not ours, and only that.
        assert all("font-awesome" in u or "fontawesome" in u for u in foreign), foreign
    finally:
        voila.terminate()
        try:
            voila.wait(15)
        except subprocess.TimeoutExpired:
            voila.kill()
            voila.wait(5)
