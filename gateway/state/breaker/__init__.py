"""Circuit breakers per provider: the one state machine (machine.py), the interface (store.py), and
its memory, SQLite and Redis stores.
"""
