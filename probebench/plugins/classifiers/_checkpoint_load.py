"""The torch side of the ``checkpoint`` classifier (imported only when it builds):
load a state_dict into an architecture, a TorchScript file or a torch.export
file, and check that the model fits the dataset, each mismatch in one line."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probebench.errors import UserError

# a state_dict may be wrapped in a training checkpoint under one of these keys
_WRAPPERS = ("state_dict", "model_state_dict", "model")


def load(component: Any, num_classes: int, shape: tuple[int, int, int]) -> nn.Module:
    """The model ``component`` (a ``Checkpoint``) names, checked against the dataset."""
    path: Path = component.path
    if component.arch:
        model = component.architecture(num_classes, shape)
        load_state(model, read_state_dict(path), path, component.arch, num_classes)
    elif path.suffix == ".pt2":
        model = _exported(path)
    else:
        model = _scripted(path)
    check_outputs(model, num_classes, shape, path)
    return model.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict file, loaded with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"checkpoint {path}: holds more than tensors (a pickled model?); save model.state_dict() "
            "instead, or a TorchScript/torch.export file without arch"
        ) from None
    except Exception as exc:  # not a torch file at all
        raise UserError(f"checkpoint {path}: not a state_dict torch.load can read ({_first_line(exc)})") from None
    for wrapper in _WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"checkpoint {path}: not a state_dict (a mapping of names to tensors); "
            "save model.state_dict(), or a TorchScript/torch.export file without arch"
        )
    return dict(state)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str, num_classes: int) -> None:
    """``model.load_state_dict(state)`` after checking keys and shapes, each mismatch one line."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserError(
            f"checkpoint {path}: its keys do not fit arch {arch!r}: "
            f"missing {_names(missing)}, unexpected {_names(unexpected)}; check arch and arch_options"
        )
    for key, want in expected.items():
        got = state[key]
        if got.shape == want.shape:
            continue
        if want.dim() >= 1 and want.shape[0] == num_classes and got.shape[1:] == want.shape[1:]:
            raise UserError(
                f"checkpoint {path}: {key} has {got.shape[0]} outputs but the dataset has {num_classes} classes; "
                "use the dataset the model was trained on"
            )
        raise UserError(
            f"checkpoint {path}: {key} has shape {list(got.shape)} in the file but {list(want.shape)} in arch "
            f"{arch!r}; check arch and arch_options (the image shape or width it was built for)"
        )
    model.load_state_dict(state)


def check_outputs(model: nn.Module, num_classes: int, shape: tuple[int, int, int], path: Path) -> None:
    """One pass of two blank images: the model must take the dataset's images and give one logit per class."""
    images = torch.zeros(2, *shape)
    try:
        with torch.no_grad():
            logits = model.eval()(images)
    except Exception as exc:
        hint = (
            "; export with a dynamic batch dimension, dynamic_shapes={'x': {0: torch.export.Dim('batch')}}"
            if path.suffix == ".pt2"
            else ""
        )
        raise UserError(
            f"checkpoint {path}: the model does not take the dataset's images [N, {', '.join(map(str, shape))}] "
            f"({_first_line(exc)}){hint}"
        ) from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserError(
            f"checkpoint {path}: the model gives {got} for 2 images but the dataset has {num_classes} classes "
            f"(expected [2, {num_classes}] logits)"
        )


def build_callable(arch: str, options: dict[str, Any]) -> nn.Module:
    """``package.module:function(**options)``, which must return an nn.Module."""
    module_name, _, function_name = arch.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"checkpoint: arch {arch!r}: cannot import {module_name!r} ({_first_line(exc)})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"checkpoint: arch {arch!r}: {module_name} has no callable {function_name!r}")
    try:
        model = function(**options)
    except TypeError as exc:
        raise UserError(f"checkpoint: arch {arch!r} rejects arch_options {options}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"checkpoint: arch {arch!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _scripted(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise UserError(
            f"checkpoint {path}: not a TorchScript file ({_first_line(exc)}); for a state_dict give arch, "
            "e.g. arch = 'timm:resnet18'; a torch.export file must end in .pt2"
        ) from None


def _exported(path: Path) -> nn.Module:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise UserError(f"checkpoint {path}: not a torch.export file ({_first_line(exc)})") from None
    # unflattened, the submodules keep their names and run as Python modules, so forward hooks fire
    return torch.export.unflatten(program)


def _names(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:3])
    return f"{shown} and {len(keys) - 3} more" if len(keys) > 3 else shown


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
