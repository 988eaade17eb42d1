"""One manager call: routing, the failover chain and retry loop under one deadline, attempts, the stream relay.

Where this sits among the layers: ARCHITECTURE.md.
"""
