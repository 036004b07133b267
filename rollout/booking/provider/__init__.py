"""The Zaptra (wpbox) WhatsApp API: client, response classification, circuit breaker."""
