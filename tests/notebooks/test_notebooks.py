"""Every notebook in notebooks/ runs top to bottom in a real kernel (nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.notebooks.conftest import NOTEBOOKS

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_documented_notebooks_exist() -> None:
    assert [p.name for p in ALL] == [
        "01-quickstart.ipynb",
        "02-remote-service.ipynb",
        "03-executions-list.ipynb",
        "04-watch-your-code.ipynb",
    ]


def _texts(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", ""))
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _widget_views(nb: nbformat.NotebookNode) -> int:
    return sum(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        for cell in nb.cells
        for o in cell.get("outputs", [])
    )


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_notebook_runs_top_to_bottom(path: Path, jupyter_env: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(jupyter_env)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = _texts(nb)
    assert "Traceback" not in text
    assert _widget_views(nb) >= 1, "a monitor must have been displayed"
    if path.stem.startswith("01"):
        assert "('completed', 100)" in text
        # The bare handle displays itself as the live monitor.
        submit = next(c for c in nb.cells if "executor.submit(workflow)" in c.source)
        assert any(
            "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in submit.outputs
        )
    elif path.stem.startswith("02"):
        assert "'completed'" in text
    elif path.stem.startswith("03"):
        assert "['completed', 'completed', 'failed']" in text
    else:  # 04: a plain loop watched with zmqmon.track and tqdm
        assert "('completed', 100)" in text
        for agent in ("data", "train", "eval"):
            assert f"('{agent}', 'completed', True)" in text
        assert "[('agent:failed', 'ValueError'), ('execution:failed', 'ValueError')]" in text
        shown = next(c for c in nb.cells if c.source.rstrip().endswith("below while they run"))
        assert any(
            "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in shown.outputs
        )
