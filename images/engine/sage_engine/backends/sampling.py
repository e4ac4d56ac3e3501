"""Next-token choice from logits: greedy at temperature 0, else temperature + top-p (nucleus)
sampling from a seeded generator, so a request with a `seed` is reproducible."""

from __future__ import annotations

import torch


def next_token(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """`logits`: the last position's scores, shape (vocabulary,)."""
    if temperature <= 0:
        return int(torch.argmax(logits).item())
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probabilities, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        sorted_probs[outside] = 0.0
        probabilities = torch.zeros_like(probabilities).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probabilities, 1, generator=generator).item())
