"""Key/value caches of prompt prefixes, reused across micro-batches of label tasks.

With a LoRA adapter active the prefix's keys and values depend on the adapter,
so an entry is keyed by the adapter's name and version as well as the prefix's
token ids. Entries are computed for a batch of one and repeated across the batch
each time they are used; the stored tensors are never modified. Least recently
used entries are dropped first. Used from the batch worker thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

PrefixKey = tuple[str, tuple[int, ...]]  # ("name@version" or "" for the base model, prefix ids)


class PrefixKV:
    def __init__(self, model: Any, torch: Any, *, max_entries: int) -> None:
        self._model = model
        self._torch = torch
        self._max_entries = max_entries
        self._entries: OrderedDict[PrefixKey, list[tuple[Any, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def cache_for(self, key: PrefixKey, batch: int) -> Any:
        """A fresh DynamicCache holding the prefix's keys and values for each of `batch` rows.

        Computes the prefix once (with whatever adapter is active now) on first use.
        """
        from transformers import DynamicCache

        layers = self._entries.get(key)
        if layers is None:
            layers = self._compute(key[1])
            if self._max_entries > 0:
                while len(self._entries) >= self._max_entries:
                    self._entries.popitem(last=False)
                self._entries[key] = layers
        else:
            self._entries.move_to_end(key)
        data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers]
        return DynamicCache(ddp_cache_data=data, config=self._model.config)

    def clear(self) -> None:
        self._entries.clear()

    def _compute(self, prefix: Sequence[int]) -> list[tuple[Any, Any]]:
        ids = self._torch.tensor([list(prefix)], dtype=self._torch.long)
        out = self._model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in out.cache.layers]
