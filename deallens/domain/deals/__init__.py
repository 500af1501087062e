"""Deal tracking from M&A news: what an article says about a deal (facts.py), read from its
headline by patterns (patterns.py; the LLM path is deallens/llm/deals.py), behind one
interface (extractor.py), which parties it names (parties.py), and which status changes a
later article may make (status.py).

Pure logic: no database, no network, no Temporal. deallens/db/deals.py applies the facts.
"""
