"""The ground floor: the error type, atomic file writes, plain-text tables and the one registry type.

Everything here depends on the standard library alone (``runtime`` also on torch, whose threads it
sets), so every other floor may use it.
"""
