"""JupyterLab in Chromium: a notebook's monitor draws the run's graph and timeline, live, and its
replay slider, dragged with the mouse, takes every view back to an earlier seq.

One JupyterLab for the whole module (it takes seconds to start), in temp dirs, no token, a fresh
workspace; the notebook is run with ``notebook:run-all-cells`` through ``window.jupyterapp``.
Screenshots (light, replay, dark theme) go to the tmp dir and ``artifacts/views/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.timeout(240)]

ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "views"
NOTEBOOK = [
    "import zmqmon\nexecutor = zmqmon.Executor()",
    "def agent(i, seconds, *deps):\n"
    "    return {'id': i, 'name': i.title(), 'uses': 'zmqmon.demo:work',\n"
    "            'params': {'seconds': seconds, 'steps': 8}, 'dependsOn': list(deps)}\n"
    "workers = [agent(f'worker-{k}', 0.8 + 0.25 * k, 'split') for k in range(8)]\n"
    "workflow = {'name': 'Lab fan-out', 'agents': [agent('split', 1.0), *workers,\n"
    "            agent('merge', 0.8, *[w['id'] for w in workers])]}",
    "execution = executor.submit(workflow)\nexecution",
]
AGENTS = 10
NODES = ".zmqmon-monitor .zmqmon-views .zm-node"
# The notebook is the current widget and its kernel is connected and idle: run-all runs now.
_KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.started && window.jupyterapp.shell.currentWidget;
  const s = w && w.sessionContext;
  const k = s && s.isReady && s.session && s.session.kernel;
  return !!(k && w.content && w.content.widgets && w.content.widgets.length === 3
            && k.connectionStatus === "connected" && k.status === "idle");
}"""


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=1):
            return True
    except OSError as exc:
        return getattr(exc, "code", None) is not None


@pytest.fixture
def lab(jupyter_env: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab on a free port serving ``jupyter_env`` (base URL, notebook dir)."""
    root = jupyter_env / "lab"
    root.mkdir()
    nb = new_notebook(cells=[new_code_cell(c) for c in NOTEBOOK])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "views.ipynb")
    # No kernel dialog (the notebook names its kernel) and no news fetched from the internet.
    settings = jupyter_env / "settings" / "@jupyterlab"
    for path, body in (
        ("notebook-extension/tracker.jupyterlab-settings", {"autoStartDefaultKernel": True}),
        ("apputils-extension/notification.jupyterlab-settings", {"fetchNews": "false"}),
    ):
        (settings / path).parent.mkdir(parents=True, exist_ok=True)
        (settings / path).write_text(json.dumps(body))
    port = free_port()
    log = open(jupyter_env / "lab.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter-lab")),
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={root}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--LabApp.workspaces_dir={jupyter_env / 'workspaces'}",
            f"--LabApp.user_settings_dir={jupyter_env / 'settings'}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        cwd=root,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for(lambda: _up(port), 60, 0.2, message="jupyter lab to listen")
        yield f"http://127.0.0.1:{port}", root
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _shoot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.locator(".zmqmon-monitor").first.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)


def _statuses(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            NODES, "ns => ns.map(n => [...n.classList].find(c => c.startsWith('zm-s-')))"
        )
    )


def test_monitor_draws_graph_and_timeline_and_replays_in_jupyterlab(
    lab: tuple[str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    base, _ = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1800})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{base}/lab/tree/views.ipynb", timeout=90_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started",
                                   timeout=90_000)  # fmt: skip
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            # (not awaited: the command's promise ends with the cells)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_selector(NODES, timeout=90_000)
            # live: a node running while the run goes on, then all completed
            wait_for(lambda: "zm-s-running" in _statuses(page), 60, 0.1, message="running node")
            assert page.locator(".zmqmon-monitor .zmqmon-views .zm-open").count() >= 1
            wait_for(
                lambda: _statuses(page) == ["zm-s-completed"] * AGENTS, 60, 0.2,
                message="every node completed",
            )  # fmt: skip
            bars = page.locator(".zmqmon-monitor .zmqmon-views .zm-bar").count()
            assert bars == AGENTS  # one timeline bar per agent
            assert page.locator(".zmqmon-monitor .zmqmon-views .zm-crit").count() >= 3
            page.locator(".zmqmon-monitor").first.scroll_into_view_if_needed()
            _shoot(page, tmp_path, "lab-completed.png")

            # drag the replay slider's handle back to about a third of the way
            handle = page.locator(".zmqmon-replay-seq .noUi-handle").first
            track = page.locator(".zmqmon-replay-seq .noUi-target").first
            hb, tb = handle.bounding_box(), track.bounding_box()
            assert hb is not None and tb is not None
            y = hb["y"] + hb["height"] / 2
            page.mouse.move(hb["x"] + hb["width"] / 2, y)
            page.mouse.down()
            page.mouse.move(tb["x"] + tb["width"] * 0.35, y, steps=10)
            page.mouse.up()
            label = page.locator(".zmqmon-replay .widget-html-content").first
            wait_for(lambda: "seq " in label.inner_text() and "live" not in label.inner_text(),
                     30, 0.1, message="the replay label")  # fmt: skip
            wait_for(lambda: "zm-s-running" in _statuses(page), 30, 0.1, message="a past state")
            _shoot(page, tmp_path, "lab-replay.png")
            page.locator(".zmqmon-replay-live").first.click()
            wait_for(
                lambda: _statuses(page) == ["zm-s-completed"] * AGENTS, 30, 0.1,
                message="live again",
            )  # fmt: skip
            page.evaluate(
                "() => window.jupyterapp.commands.execute('apputils:change-theme',"
                " {theme: 'JupyterLab Dark'})"
            )
            page.wait_for_selector(
                "body[data-jp-theme-light='false']", state="attached", timeout=30_000
            )
            _shoot(page, tmp_path, "lab-dark.png")
        except BaseException:
            page.screenshot(path=str(tmp_path / "lab-failed.png"))  # what the page showed
            raise
        finally:
            browser.close()
    foreign = [u for u in requests if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1",
                                                        "data:", "blob:"))]  # fmt: skip
    assert not foreign, foreign
