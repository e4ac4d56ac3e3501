"""SAGE's API: the custom resource models (the single source of truth for the CRDs),
the names that must not drift, ports and user paths. Pure: no I/O at import or call time."""
