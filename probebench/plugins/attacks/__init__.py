"""Built-in adversarial attacks."""

from __future__ import annotations
