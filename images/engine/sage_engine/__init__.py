"""SAGE's engine server: one process serving one model on one port, OpenAI-compatible.

`python -m sage_engine --backend B --model M` (see `--help`). The pure parts (request parsing,
batching policy, SSE framing, stop matching, deterministic test models) live in
modules that import no web framework; `app` and `server` wire them to FastAPI and uvicorn.
"""
