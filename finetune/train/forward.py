"""One forward pass for a batch whose sequences share a prefix (system prompt, chat markup).

The shared prefix is run once (batch of one) and its key/value cache repeated across the
batch, so only the tokens after it cost a full batch. With compact prompts the prefix is a
third of every sequence. Gradients flow through the prefix too, so training uses it as well.
Only the hidden states are computed here; callers apply the output head to the few
positions they need (the answer tokens), not to every position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, leaving at least one token of every sequence after it."""
    if not sequences:
        return 0
    first = sequences[0]
    limit = min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


def decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The transformer body and the output head of a causal LM (peft-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


def pad_right(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def hidden_states(
    decoder: Any, prefix: Sequence[int], rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> torch.Tensor:
    """Last-layer hidden states (batch, longest row, hidden) of prefix + row, at the row's positions."""
    ids, mask = pad_right(rows, pad_id, device)
    if not prefix:
        return decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # type: ignore[no-any-return]
    n = len(prefix)
    head = decoder(input_ids=torch.tensor([list(prefix)], dtype=torch.long, device=device), use_cache=True)
    cache = head.cache if hasattr(head, "cache") else head.past_key_values
    cache.batch_repeat_interleave(len(rows))
    full_mask = torch.cat([torch.ones((len(rows), n), dtype=torch.long, device=device), mask], dim=1)
    positions = (torch.arange(ids.shape[1], device=device) + n).unsqueeze(0).expand(len(rows), -1)
    out = decoder(input_ids=ids, attention_mask=full_mask, position_ids=positions, cache=cache, use_cache=True)
    return out.last_hidden_state  # type: ignore[no-any-return]
