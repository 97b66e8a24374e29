"""Terminal faces: `zmqmon run` progress display and `zmqmon tail` printing."""
