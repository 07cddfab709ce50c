"""Usage records, one per answered request: the interface and aggregates (store.py) and the SQLite and Redis stores."""
