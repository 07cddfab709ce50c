"""Shared state, one subpackage per concern (budget, cache, breaker, ratelimit, usage), each an
interface beside its memory, SQLite and Redis stores. Imports neither routing nor remote.
"""
