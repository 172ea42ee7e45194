"""Pipeline stages: data -> train -> features -> score -> evaluate (see DESIGN.md)."""
