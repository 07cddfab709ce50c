"""The edges: the gRPC servicer, proto <-> domain conversion, and the HTTP side (health, metrics,
dashboard). No routing decisions.
"""
