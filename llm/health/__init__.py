"""What the manager knows of each backend: the circuit breaker, its slot (latency, limits), probes and the monitor.

Where this sits among the layers: ARCHITECTURE.md.
"""
