"""The one place that builds the pieces from config and runs them: server bootstrap and drain, the
local and remote tiers, the front.
"""
