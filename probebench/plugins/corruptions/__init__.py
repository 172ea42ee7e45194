"""Built-in corruptions."""

from __future__ import annotations


def family_member(base: type, class_name: str, **attributes) -> type:
    """A subclass of ``base`` named ``class_name`` in ``base``'s module with
    ``attributes`` (``name``, ``__doc__``, what ``base.__call__`` reads): how a
    module registers each member of a corruption family as its own class."""
    return type(class_name, (base,), {**attributes, "__module__": base.__module__})


def camel(key: str, separator: str) -> str:
    """``"lens-blur"``, ``"-"`` -> ``"LensBlur"``."""
    return "".join(part.capitalize() for part in key.split(separator))
