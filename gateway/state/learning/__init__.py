"""Training rows captured from escalated requests (the one place the gateway keeps prompt text, on
purpose and only for tasks with `learn = true`): the interface (store.py) and the SQLite and Redis stores.
"""
