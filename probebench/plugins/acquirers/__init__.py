"""Built-in acquirers: the active-learning strategies (probebench/pipeline/active.py)."""
