"""The embedded WhatsApp booking-notification service (``rollout serve``)."""
