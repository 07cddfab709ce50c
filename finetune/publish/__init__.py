"""What a run leaves behind: the adapter card, the report, and the folder vLLM and Ollama serve,
published atomically.
"""
