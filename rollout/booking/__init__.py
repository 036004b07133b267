"""The booking-notification product rollout ships as its default target: the WhatsApp
booking-confirmation service (``rollout serve``: store, outbox, schema, settings), the Zaptra
provider client and its breaker, the local Zaptra sandbox (``rollout sandbox``), phone rules,
cohort bucketing, and a fleet replica's flag follower.

It imports nothing of the tool, only :mod:`rollout.util` (enforced by import-linter); the tool
reaches it in one place, the embedded target (:mod:`rollout.targets.embedded`)."""
