"""Small utilities every part of rollout may use, the booking product included: the clock, units,
the one exception tree, YAML and env files, safe output paths, redaction and phone masking,
PostgreSQL helpers, serving an ASGI app. They import nothing else of rollout."""
