"""Int8 dynamic quantisation of a model's linear layers, kept compatible with peft LoRA.

torch's dynamic quantisation (weights int8, activations quantised per batch) runs
the prefill of a small model two to three times faster on CPU, but it changes the
answers: labels and confidences are no longer those an adapter's card was measured
with. It is therefore opt-in (`quantize_int8`); re-measure the cards with it on.

`torch.ao.quantization.quantize_dynamic` swaps nn.Linear for a module peft refuses
to wrap, so each layer here stays an nn.Linear (peft injects LoRA around it as
usual, and the LoRA matrices stay float) whose forward runs the int8 kernel. The
output head is left in float: it decides every token.
"""

from __future__ import annotations

from typing import Any


def quantize_linear_layers(model: Any, torch: Any) -> int:
    """Replace, in place, every nn.Linear of `model` but its output head; returns how many."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    class Int8Linear(torch.nn.Linear):  # type: ignore[misc, name-defined]
        """An nn.Linear (to peft and to anything reading .weight) that multiplies in int8."""

        def __init__(self, linear: Any) -> None:
            super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
            self.weight = linear.weight
            self.bias = linear.bias
            linear.qconfig = per_channel_dynamic_qconfig
            self._int8 = [DynamicLinear.from_float(linear)]  # type: ignore[no-untyped-call]  # a list: no submodule

        def forward(self, x: Any) -> Any:
            return self._int8[0](x)

    head = model.get_output_embeddings()
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear and child is not head
    ]
    for parent, name, child in swaps:
        setattr(parent, name, Int8Linear(child))
    return len(swaps)
