"""Built-in probers."""
