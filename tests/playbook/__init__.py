"""Tests of rollout/playbook/: loading, templates, schedules, the schema, init's scaffold, environments, bounds, plugins."""
