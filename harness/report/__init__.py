"""Turning result tables into what a person reads: terminal tables, markdown, CSV."""
