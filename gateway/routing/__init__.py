"""Where a request goes: the policy (the one owner of that decision), the router that executes its
plan, capacity, tasks, and the cache and recording layers around the router.
"""
