"""Who may call the gateway, for which models, and how much: API keys, their policies and the
limits on their use (see docs/auth.md)."""
