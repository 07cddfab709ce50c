"""The remote tier: one escalated call through the provider chain, with retries, token estimates
and latency tracking; providers/ has one module per commercial API.
"""
