"""Reproducible performance measurements; each module prints its figures."""
