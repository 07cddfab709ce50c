"""Per-provider daily token budgets: the ledger interface (ledger.py) and its memory, SQLite and Redis stores."""
