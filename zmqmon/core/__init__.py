"""The pure core of zmqmon: event models, the wire codec, the state reducer, workflow definitions,
the state-service request codec, and the layout of the graph and timeline views.

Nothing in this package opens a socket or a file, starts a thread, or reads a clock it is not
handed. It imports none of zmq, websockets, sqlite3 or ipywidgets; everything else builds on it.
"""
