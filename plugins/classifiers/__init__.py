"""Built-in classifiers."""
