"""Local inference backends: in-process transformers, vLLM, Ollama, and an echo backend."""
