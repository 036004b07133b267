"""A local Zaptra (wpbox) compatible server with fault injection (``rollout sandbox``)."""
