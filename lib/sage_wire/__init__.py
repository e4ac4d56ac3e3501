"""The wire format SAGE's HTTP servers share (the gateway and the engine server): error types and
their envelopes in the OpenAI and Anthropic shapes, server-sent events framing, and reading a
request body within a size limit. `errors`, `envelopes` and `sse` are pure; `asgi` needs Starlette."""
