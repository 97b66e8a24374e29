"""tqdm's bars as the progress of the current tracked run — with no change to the loops.

While a run started by ``zmqmon.track`` is active, the methods of ``tqdm.std.tqdm`` (which every
tqdm flavour — ``tqdm.auto``, ``tqdm.notebook``, ``tqdm.rich``… — inherits and calls) are wrapped,
so bars created anywhere, libraries included, report:

* inside an agent (``with run.agent(...)``): the agent's first open bar is its progress
  (``n/total``); bars nested in it leave the agent alone;
* outside any agent: each bar is an agent of its own, named by its ``desc`` (``tqdm`` if none),
  started with the bar and completed when it closes.

What it costs tqdm: nothing per item — tqdm calls ``update`` only when it redraws (every 0.1 s by
default); the report there is coalesced like ``agent.progress``. Disabled bars are left alone.
When the last watched run finishes, tqdm's methods are put back. ``zmqmon.track.tqdm`` (the
:class:`tqdm` class here) installs the wrapping for good, for code that prefers to say so.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from zmqmon.tracking.run import Run, TrackedAgent, current_agent, current_run

try:
    import tqdm.std as _std
except ImportError:  # pragma: no cover - tqdm is optional
    _std = None

__all__ = ["tqdm", "watch"]

_lock = threading.Lock()
_watching: set[str] = set()  # execution ids of the runs that asked for it
_forever = False
_originals: dict[str, Any] = {}


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-")
    return slug[:100] or "tqdm"


def _bind(bar: Any) -> None:
    """Attach a new bar to the current run: to its agent, or as an agent of its own."""
    if getattr(bar, "disable", True):
        return
    run = current_run()
    if run is None or run.finished:
        return
    agent = current_agent()
    owned = False
    if agent is not None and agent.run is run:
        if getattr(agent, "_tqdm_bar", None) is not None:
            return  # nested in a bar that already reports for this agent
        agent._tqdm_bar = bar  # type: ignore[attr-defined]
    else:
        desc = str(getattr(bar, "desc", "") or "").rstrip(": ")
        agent = run.agent(_slug(desc), name=desc or "tqdm").start()
        owned = True
    bar._zmqmon = (agent, owned)
    _report(bar, agent)


def _report(bar: Any, agent: TrackedAgent) -> None:
    n, total = bar.n, bar.total
    if total:
        agent.progress(n * 100 / total, f"{n:g}/{total:g}")
    else:
        agent.progress(0, f"{n:g} {getattr(bar, 'unit', 'it')}")


def _original(name: str, bar: Any) -> Any:
    """tqdm's own method, bound (``__init__`` is a ``partialmethod`` there, not a function)."""
    return _originals[name].__get__(bar, type(bar))


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original("__init__", self)(*args, **kwargs)
    self._zmqmon = None
    try:
        _bind(self)
    except Exception:  # pragma: no cover - reporting never breaks a bar
        self._zmqmon = None


def _update(self: Any, n: float = 1) -> Any:
    shown = _original("update", self)(n)
    bound = getattr(self, "_zmqmon", None)
    if bound is not None:
        _report(self, bound[0])
    return shown


def _close(self: Any) -> None:
    bound = getattr(self, "_zmqmon", None)
    _original("close", self)()
    if bound is None:
        return
    self._zmqmon = None
    agent, owned = bound
    _report(self, agent)
    if owned:
        agent.complete({"n": self.n, "total": self.total})
    elif getattr(agent, "_tqdm_bar", None) is self:
        agent._tqdm_bar = None


def _install() -> None:
    cls = _std.tqdm
    if _originals:
        return
    for name, wrapper in (("__init__", _init), ("update", _update), ("close", _close)):
        _originals[name] = cls.__dict__[name]
        setattr(cls, name, wrapper)


def _uninstall() -> None:
    cls = _std.tqdm
    for name, original in _originals.items():
        setattr(cls, name, original)
    _originals.clear()


def _unwatch(run: Run) -> None:
    with _lock:
        _watching.discard(run.execution_id)
        if not _watching and not _forever:
            _uninstall()


def watch(run: Run) -> None:
    """Report tqdm's bars while ``run`` is active (nothing if tqdm is not installed)."""
    if _std is None:
        return
    with _lock:
        _watching.add(run.execution_id)
        _install()
    run._finish_hooks.append(_unwatch)


if _std is not None:

    class tqdm(_std.tqdm):  # type: ignore[misc]
        """``tqdm.tqdm``, reporting to the current run as described in the module doc."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            global _forever
            with _lock:
                _forever = True
                _install()
            super().__init__(*args, **kwargs)

else:  # pragma: no cover

    def tqdm(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        """Needs tqdm."""
        raise ImportError("zmqmon.track.tqdm needs tqdm: pip install tqdm")
