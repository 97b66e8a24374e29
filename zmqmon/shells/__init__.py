"""Shells: the I/O around the core: SQLite store, ZeroMQ publisher and subscriber, state client."""
