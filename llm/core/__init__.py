"""The vocabulary every layer shares: backend names, request validation, secrets, bounds of numbers from outside,
the policy. Where this sits among the layers: ARCHITECTURE.md.
"""
