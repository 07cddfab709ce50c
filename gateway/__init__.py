"""Local-first hybrid inference gateway for trading services."""
