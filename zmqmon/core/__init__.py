"""The pure core of zmqmon: event models, the wire codec, the state reducer, workflow definitions
and the state-service request codec.

Nothing in this package opens a socket or a file, starts a thread, or reads a clock it is not
handed. It imports none of zmq, websockets, sqlite3 or ipywidgets; everything else builds on it.
"""
