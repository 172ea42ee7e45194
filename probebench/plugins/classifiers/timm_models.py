"""``timm``: any timm architecture, built untrained for the dataset at hand, or
from pretrained weights in a local file."""

from __future__ import annotations

from pathlib import Path

from probebench.errors import UserError, suggest
from probebench.hookspecs import hookimpl


class Timm:
    """Any timm architecture, untrained: name it `timm:resnet18` or { name = "timm", arch = "resnet18" };
    list names with python -c "import timm; print(timm.list_models('resnet*'))".

    Built with ``pretrained=False`` (nothing is downloaded), ``num_classes``
    and ``in_chans`` from the dataset. Hidden layers are the model's module
    names (for ResNets: ``layer1`` .. ``layer4``, ``global_pool`` = the pooled
    512-d features of resnet18, ``fc``). ``small_input`` swaps a ResNet's
    7x7/2 stem and max-pool for a 3x3/1 convolution, the usual change for
    32x32 images (CIFAR), keeping the module names. Trained with Adam and a
    one-cycle schedule like ``cnn``.

    ``pretrained_file`` starts from weights in a local ``.safetensors`` file
    (nothing is downloaded; its SHA-256 is in the cache key) through timm's
    own loader: a head for another number of classes is replaced by a fresh
    one and a 3-channel stem summed for 1-channel images, as timm does. Then
    it is fine-tuned for ``epochs``, or with ``epochs = 0`` evaluated as it is
    (the file's head must then have one output per class of the dataset).
    """

    name = "timm"
    version = "1"
    loads_weights = True
    option_help = {
        "arch": "timm model name, e.g. resnet18 (also given as the name suffix, timm:resnet18)",
        "small_input": "ResNet stem for small images: 3x3 stride-1 conv1, no max-pool",
        "epochs": "training epochs",
        "lr": "peak learning rate of Adam (one-cycle schedule)",
        "batch_size": "training batch size",
        "weight_decay": "Adam weight decay",
        "drop_rate": "dropout before the classifier head (timm's drop_rate)",
        "pretrained_file": "local .safetensors file of pretrained weights to start from (nothing is downloaded)",
    }
    option_ranges = {
        **{"epochs": "[0, inf)", "lr": "(0, inf)", "batch_size": "[1, inf)", "weight_decay": "[0, inf)"},
        "drop_rate": "[0, 1)",
    }

    def __init__(
        self,
        arch: str | None = None,
        variant: str | None = None,
        small_input: bool = False,
        epochs: int = 15,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 5e-4,
        drop_rate: float = 0.0,
        pretrained_file: str | None = None,
    ):

        if arch and variant and arch != variant:
            raise UserError(f"timm: the name says timm:{variant} but arch is {arch!r}; give one of them")
        self.arch = arch or variant
        if not self.arch:
            raise UserError(
                'timm: name the architecture, e.g. classifier = "timm:resnet18" or { name = "timm", arch = "resnet18" }'
            )
        self.pretrained_file = Path(pretrained_file).expanduser() if pretrained_file else None
        if self.pretrained_file is not None:
            if self.pretrained_file.suffix != ".safetensors" or not self.pretrained_file.is_file():
                raise UserError(
                    f"timm: pretrained_file {str(self.pretrained_file)!r} is not an existing .safetensors file "
                    f"(relative paths start in {Path.cwd()}); save one with safetensors.torch.save_file"
                )
            if epochs == 0 and small_input:
                raise UserError("timm: small_input replaces the pretrained stem; fine-tune it with epochs >= 1")
        elif epochs < 1:
            raise UserError("timm: epochs must be positive (0 evaluates a pretrained_file as it is)")
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise UserError("timm: epochs, batch_size and lr must be positive")
        if not 0 <= drop_rate < 1:
            raise UserError(f"timm: drop_rate must lie in [0, 1), got {drop_rate}")
        self.small_input = small_input
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.weight_decay, self.drop_rate = weight_decay, drop_rate

    def build(self, num_classes: int, shape: tuple[int, int, int]):
        import timm

        if not timm.is_model(self.arch):
            raise UserError(
                f"timm has no model {self.arch!r}{suggest(self.arch, timm.list_models())}; "
                f"python -c \"import timm; print(timm.list_models('{self.arch[:3]}*'))\" lists some"
            )
        if self.pretrained_file is not None:
            from probebench.plugins.classifiers._timm_pretrained import create_pretrained

            model = create_pretrained(self, num_classes, shape[0])
        else:
            model = timm.create_model(
                self.arch, pretrained=False, num_classes=num_classes, in_chans=shape[0], drop_rate=self.drop_rate
            )
        if self.small_input:
            _small_stem(model, self.arch)
        return model

    @property
    def trains(self) -> bool:
        """False with ``epochs = 0``: a pretrained_file evaluated as it is."""
        return self.epochs > 0

    def weights_files(self) -> list[Path]:
        return [self.pretrained_file] if self.pretrained_file is not None else []


def _small_stem(model, arch: str) -> None:
    from torch import nn

    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise UserError(f"timm: small_input works for ResNet-style models (conv1 + maxpool stem), not {arch!r}")
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None)
    model.maxpool = nn.Identity()


@hookimpl
def register_classifiers():
    return [Timm]
