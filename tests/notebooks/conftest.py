"""Jupyter in temp dirs, with a ``python3`` kernelspec that runs this venv's python."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """JUPYTER_DATA_DIR / JUPYTER_RUNTIME_DIR / IPYTHONDIR in ``tmp_path``; the ``python3``
    kernelspec there points at ``sys.executable`` (the venv), whatever else is installed."""
    data = tmp_path / "jupyter-data"
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (zmqmon venv)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    # The environment wins over other endpoints a notebook might pick up.
    monkeypatch.delenv("ZMQMON_EVENTS", raising=False)
    monkeypatch.delenv("ZMQMON_STATE", raising=False)
    yield tmp_path
