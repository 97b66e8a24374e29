"""zmqmon bridge: the ZeroMQ stream as WebSocket subscriptions, with health, metrics, dashboard.

``Bridge`` (start on port 0, ``.port``, ``.ws_url``, ``.stop()``), ``Limits`` and ``run_bridge``
(the ``zmqmon bridge`` command) live in :mod:`zmqmon_bridge.server`; the per-connection logic,
sans I/O, in :mod:`zmqmon_bridge.protocol`.
"""

from zmqmon_bridge.server import Bridge, Limits, run_bridge

__all__ = ["Bridge", "Limits", "run_bridge"]
