"""API keys: the token format (token.py), the store interface (store.py) and its memory, SQLite and Redis stores,
and the in-memory table the doors check keys against (table.py)."""
