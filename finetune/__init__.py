"""Fine-tuning pipeline: real market data -> labelled tasks -> LoRA adapters with measured
accuracy, calibrated confidence and an escalation threshold, exported for vLLM and Ollama.

Run it with `python -m finetune` (see docs/finetune.md). Nothing here runs at import time.
"""
