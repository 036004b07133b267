"""Playbooks: the launch plan as validated YAML."""
