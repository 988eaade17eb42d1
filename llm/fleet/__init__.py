"""State a fleet of processes shares: the client-side rate limiter and its stores (in process, Redis).

Where this sits among the layers: ARCHITECTURE.md.
"""
