"""The ``timm`` classifier's ``pretrained_file``: timm's own loader pointed at a
local ``.safetensors`` file (imported only when such a model is built)."""

from __future__ import annotations

from typing import Any

import timm
from safetensors import safe_open

from probebench.errors import UserError


def create_pretrained(component: Any, num_classes: int, in_chans: int) -> Any:
    """``timm.create_model`` with ``pretrained=True`` reading ``component.pretrained_file``."""
    path = component.pretrained_file
    classifier = timm.models.get_pretrained_cfg(component.arch).classifier
    file_classes = _head_outputs(path, classifier)
    if component.epochs == 0 and file_classes != num_classes:
        raise UserError(
            f"timm: {path} has {file_classes} outputs in {classifier}.weight but the dataset has {num_classes} "
            "classes; fine-tune it (epochs >= 1) or use weights trained on these classes"
        )
    overlay = {"file": str(path), "num_classes": file_classes}
    try:
        return timm.create_model(
            component.arch,
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            num_classes=num_classes,
            in_chans=in_chans,
            drop_rate=component.drop_rate,
        )
    except RuntimeError as exc:  # load_state_dict: other keys or shapes
        first = " ".join(str(exc).split())[:300]
        raise UserError(f"timm: {path} does not fit {component.arch!r}: {first}") from None


def _head_outputs(path: Any, classifier: str) -> int:
    """Rows of ``<classifier>.weight`` in the file (its number of classes)."""
    with safe_open(str(path), framework="pt") as weights:
        name = f"{classifier}.weight"
        if name not in set(weights.keys()):  # safe_open supports no `in`
            raise UserError(
                f"timm: {path} has no {name!r} (the head of this architecture); is it weights of another model?"
            )
        return int(weights.get_slice(name).get_shape()[0])
