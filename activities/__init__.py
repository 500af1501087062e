"""Thin Temporal adapters over deallens/: read config, call the core, heartbeat, map errors."""
