"""News logic that needs no I/O: story grouping and company linking."""
