"""Operations logic (health verdicts), free of Temporal and I/O so that it is tested directly."""
