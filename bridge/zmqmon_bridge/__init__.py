"""zmqmon bridge: the ZeroMQ stream as WebSocket subscriptions, with health, metrics, dashboard."""
