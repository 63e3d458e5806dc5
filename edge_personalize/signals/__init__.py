"""Readers of the visitor's anonymous signals.

Each module turns raw request data into a reduced value at once: raw header strings never
travel past the signal that reads them.
"""
