"""``cnn``: the LeNet-style CNN of the reference code, with dropout."""

from __future__ import annotations

from probebench.errors import UserError
from probebench.hookspecs import hookimpl


class CNN:
    """LeNet-style CNN: two conv+ReLU+max-pool blocks, then ``fc_layer``, an
    ``nn.Sequential`` of Linear(·,512) ReLU Dropout Linear(512,256) ReLU Dropout
    Linear(256,K). As in the reference code, ``fc_layer.4`` is the ReLU after
    Linear(512->256): a 256-d hidden representation. Dropout sits only in the
    fully-connected part, so the conv trunk is deterministic (MC dropout can
    run it once).

    Trained with Adam and a one-cycle schedule on the training split.
    """

    name = "cnn"
    version = "1"
    option_help = {
        "epochs": "training epochs",
        "lr": "peak learning rate of Adam (one-cycle schedule)",
        "batch_size": "training batch size",
        "weight_decay": "Adam weight decay",
        "dropout": "dropout probability in fc_layer",
        "width": "channels of the first conv layer (the second has twice as many)",
    }
    option_ranges = {
        **{"epochs": "[1, inf)", "lr": "(0, inf)", "batch_size": "[1, inf)", "weight_decay": "[0, inf)"},
        "dropout": "[0, 1)",
        "width": "[1, inf)",
    }

    def __init__(
        self,
        epochs: int = 8,
        lr: float = 2e-3,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        dropout: float = 0.3,
        width: int = 32,
    ):

        if epochs < 1 or batch_size < 1 or width < 1:
            raise UserError("cnn: epochs, batch_size and width must be positive")
        if not 0 <= dropout < 1:
            raise UserError(f"cnn: dropout must lie in [0, 1), got {dropout}")
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.weight_decay, self.dropout, self.width = weight_decay, dropout, width

    def build(self, num_classes: int, shape: tuple[int, int, int]):
        from probebench.plugins.classifiers._cnn_net import CNNNet

        return CNNNet(num_classes, shape, self.dropout, self.width)


@hookimpl
def register_classifiers():
    return [CNN]
