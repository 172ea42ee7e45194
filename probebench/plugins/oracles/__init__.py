"""Built-in oracles: who labels what an acquirer picks or makes (probebench/pipeline/active.py)."""
