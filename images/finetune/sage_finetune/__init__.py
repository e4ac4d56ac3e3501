"""The SAGE fine-tune runner: trains a LoRA adapter (or all weights) of a causal LM on a JSONL
dataset, reports progress as JSON lines (and to its FinetuneJob's status), checkpoints on SIGTERM
and resumes from the newest checkpoint. Entry point: `python -m sage_finetune --help`."""
