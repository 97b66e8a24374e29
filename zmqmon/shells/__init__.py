"""Shells: the I/O around the core — SQLite store, ZeroMQ publisher, subscriber, state client, proxy."""
