"""AI insights' pure core: indicators, contexts and their hashes, figure grounding, rule-based analyses."""
