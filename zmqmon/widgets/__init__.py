"""Notebook faces: ipywidgets monitors fed over ZeroMQ by the subscriber and the one reducer."""
