"""Serving side of opencc-cm-escalation: fills the Triton model repository and runs the server."""
