"""DealLens application core.

Nothing in this package imports Temporal: workflows/ and activities/ adapt it to Temporal,
so that the core can be tested, benchmarked and reused without a server.
"""
