"""The torch module behind the ``cnn`` classifier (imported only when built)."""

from __future__ import annotations

from torch import nn

from probebench.errors import UserError


class CNNNet(nn.Module):
    def __init__(self, num_classes: int, shape: tuple[int, int, int], dropout: float = 0.3, width: int = 32):
        super().__init__()
        channels, height, width_px = shape
        side_h, side_w = (height - 2) // 2, (width_px - 2) // 2
        side_h, side_w = (side_h - 2) // 2, (side_w - 2) // 2
        if side_h < 1 or side_w < 1:
            raise UserError(f"cnn needs images of at least 10x10 pixels, got {height}x{width_px}")
        self.conv_layer = nn.Sequential(
            nn.Conv2d(channels, width, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc_layer = nn.Sequential(
            nn.Linear(2 * width * side_h * side_w, 512),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.fc_layer(self.conv_layer(x).flatten(1))
