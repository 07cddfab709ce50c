"""requests_per_minute windows per provider: the interface (store.py) and its memory, SQLite and Redis stores."""
