"""What the SDK adapters share: the adapter skeleton, its error scope and table, the stream accumulator, the
HTTP transport. Where this sits among the layers: ARCHITECTURE.md.
"""
