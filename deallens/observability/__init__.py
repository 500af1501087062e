"""Traces (tracing.py) and metrics (metrics.py): both off unless configured, and cheap when off."""
