"""Built-in corruptions."""
