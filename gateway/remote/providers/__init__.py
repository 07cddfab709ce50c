"""Commercial providers, one small module each over the official async SDK.

Nothing here imports an SDK at import time: each provider class imports its
SDK in its constructor, and gateway/remote/providers/registry.py names the classes
as strings.
"""
