"""What calls use and cost: usage in one shape, prices, the ledger and budget, OpenTelemetry spans and metrics.

Where this sits among the layers: ARCHITECTURE.md.
"""
