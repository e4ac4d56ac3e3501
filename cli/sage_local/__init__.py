"""Local mode: the same LLMEngine manifests run as local processes, with no cluster (`sage up`)."""
