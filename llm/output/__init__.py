"""Structured output: the `response_format` spec and strict schemas, parsing and repair, JSON read out of free text.

Where this sits among the layers: ARCHITECTURE.md.
"""
