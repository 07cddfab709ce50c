"""The response cache stores: the interface (store.py), memory, SQLite, Redis, and a memory front
tier over a shared store.
"""
