"""Services: the state service (ZeroMQ ROUTER) and the workflow executor, and their composition."""
