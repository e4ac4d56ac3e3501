"""Several workers (processes) serving one gateway: the supervisor that forks them, and the
counts they share so that routing agrees across them (docs/gateway.md, "Workers")."""

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Set before any metric exists when several workers serve one gateway: each worker's values go
to files in that folder and `/metrics` on any worker sums them all."""
