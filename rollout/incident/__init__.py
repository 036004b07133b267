"""Incident reports rendered from the engine's record (jinja2)."""
