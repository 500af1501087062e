"""Pure domain logic: no I/O, no Temporal, no database sessions."""
