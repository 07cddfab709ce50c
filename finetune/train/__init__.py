"""LoRA training with peft: the loop, the shared-prefix forward pass, processes under accelerate launch."""
