"""rollout: a risky feature launch as code.

The package holds the rollout engine (playbooks, gates, ramps, the kill switch), the embedded
WhatsApp booking-notification service it launches, and a local Zaptra-compatible sandbox.
"""

__version__ = "0.1.0"
