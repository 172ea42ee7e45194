"""``checkpoint``: a classifier the user already trained, loaded instead of trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class Checkpoint:
    """A model you trained yourself, loaded (never trained): a state_dict
    loaded with weights_only=True into ``arch``, or a TorchScript file, or a
    torch.export ``.pt2`` file (no ``arch`` for these two).

    ``arch`` is another classifier's network, built untrained for the
    dataset's classes and image shape (``"cnn"``, ``"timm:resnet18"``, with
    ``arch_options`` as its options), or ``"package.module:function"``, an
    importable callable called with ``arch_options`` as keyword arguments
    that returns the ``nn.Module``. A mismatch (missing or unexpected keys,
    another number of classes, another input shape) is a one-line error
    naming what differs. The file's SHA-256 is part of the cache key.

    Layers are the model's module names (``probebench layers --checkpoint
    FILE --arch ARCH``). A ``.pt2`` is unflattened (``torch.export.unflatten``)
    so its submodules keep their names and layer features work; its dropout
    is frozen at export, so ``mc-dropout`` cannot run on it, and it has no
    fx graph to cut, so gradient scorers differentiate the whole model. A
    TorchScript model runs no forward hooks: scorers that read hidden layers
    fail on it with a one-line error, the logit-based ones work.
    """

    name = "checkpoint"
    version = "1"
    loads_weights = True
    trains = False
    option_help = {
        "path": "the saved model: a state_dict (.pt/.pth, with arch), TorchScript (.pt) or torch.export (.pt2) file",
        "arch": "architecture of a state_dict: a classifier name (cnn, timm:resnet18) or package.module:function",
        "arch_options": "options of the arch classifier, or keyword arguments of the arch function",
    }

    def __init__(self, path: str = "", arch: str | None = None, arch_options: dict[str, Any] | None = None):
        if not path:
            raise UserError('checkpoint: give the saved model, e.g. { name = "checkpoint", path = "model.pt" }')
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise UserError(f"checkpoint: no file {str(self.path)!r} (relative paths start in {Path.cwd()})")
        self.arch = arch or None
        self.arch_options = dict(arch_options or {})
        self._arch_component = _registered_arch(self.arch, self.arch_options) if self.arch else None

    def weights_files(self) -> list[Path]:
        return [self.path]

    def build(self, num_classes: int, shape: tuple[int, int, int]):
        from probebench.plugins.classifiers._checkpoint_load import load

        return load(self, num_classes, shape)

    def architecture(self, num_classes: int, shape: tuple[int, int, int]):
        """The untrained network of ``arch`` for ``num_classes`` and ``shape``."""
        from probebench.plugins.classifiers._checkpoint_load import build_callable

        assert self.arch is not None
        if self._arch_component is not None:
            return self._arch_component.build(num_classes, shape)
        return build_callable(self.arch, self.arch_options)


def _registered_arch(arch: str, options: dict[str, Any]) -> Any:
    """The classifier component ``arch`` names (``cnn``, ``timm:resnet18``), or
    None when ``arch`` is a ``module:function`` path instead."""
    from probebench.registry import Registry, creating_registry
    from probebench.suite import load_config

    registry = creating_registry() or Registry(load_config(None).builtin)
    names = [name for name in registry.names("classifier") if name != Checkpoint.name]
    if arch.split(":", 1)[0] in names:
        return registry.create("classifier", arch, options)
    if ":" in arch:
        return None  # an importable module:function
    raise UserError(
        f"checkpoint: arch {arch!r} is neither a classifier ({', '.join(names)}) nor a package.module:function"
    )


@hookimpl
def register_classifiers():
    return [Checkpoint]
