"""Picture grids that let a person see what components do to an image: the
corruptions at each severity, a flow's samples and reconstructions, and a
corrector's edits of the misses it corrected."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from probebench.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from probebench.registry import Registry
    from probebench.suite import ComponentSpec

SEVERITIES = (1, 2, 3, 4, 5)


def corruption_grid(
    registry: Registry,
    dataset_spec: ComponentSpec | str,
    corruption_names: list[str] | None,
    out_png: Path | str,
    data_root: str | None = None,
    index: int = 0,
    seed: int = 0,
) -> Path:
    """Draw test image ``index`` of a dataset clean and under each corruption at
    severities 1..5 (one row per corruption) into ``out_png``; return its path.

    ``dataset_spec`` is a ``ComponentSpec`` or a dataset name;
    ``corruption_names`` a list of corruption names (empty or None: all
    registered). Each corruption gets the generator a run with ``seed`` gives
    it, so the grid shows exactly what that run's test images looked like. A
    corruption that fails is drawn as a labelled blank row, reported on the
    console, and does not stop the others.
    """
    from probebench.console import console
    from probebench.pipeline.data import check_images, corrupt
    from probebench.suite import ComponentSpec, CorruptionSpec

    spec = ComponentSpec(dataset_spec) if isinstance(dataset_spec, str) else dataset_spec
    names = list(corruption_names or registry.names("corruption"))
    for name in names:
        registry.get("corruption", name)  # an unknown name fails before any work
    dataset = registry.create("dataset", spec.name, spec.options)
    images, _labels = dataset.load("test", data_root)
    check_images(images, f"dataset {spec.name!r} split 'test'", tuple(dataset.shape))
    if not 0 <= index < len(images):
        raise UserError(f"image index {index} is out of range: dataset {spec.name!r} has {len(images)} test images")
    image = images[index : index + 1].float()

    rows: list[tuple[str, list[torch.Tensor | None]]] = []
    for name in names:
        try:
            tiles: list[torch.Tensor | None] = [
                corrupt(registry, CorruptionSpec(name), image, s, seed)[0] for s in SEVERITIES
            ]
        except UserError:
            raise
        except Exception as exc:  # a broken plugin should not hide the others
            console.print(f"[red]corruption {name!r} failed: {type(exc).__name__}: {exc}[/]")
            tiles = [None] * len(SEVERITIES)
        rows.append((name, tiles))
    out = Path(out_png)
    _draw(image[0], rows, out, f"{spec.label}: test image {index}, seed {seed}")
    return out


def _draw(clean: torch.Tensor, rows: list[tuple[str, list[torch.Tensor | None]]], out: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 1 + len(SEVERITIES)
    side = 1.05
    width, height = 1.9 + cols * side, 0.7 + max(1, len(rows)) * side
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        max(1, len(rows)),
        cols,
        left=1.8 / width,
        right=0.99,
        top=1 - 0.6 / height,
        bottom=0.01,
        wspace=0.05,
        hspace=0.08,
    )
    fig.suptitle(title, fontsize=9, x=0.02, y=1 - 0.08 / height, ha="left", va="top")
    for r, (name, tiles) in enumerate(rows):
        for c, tile in enumerate([clean] + tiles):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {SEVERITIES[c - 1]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if tile is None:
                ax.text(0.5, 0.5, "failed", color="red", ha="center", va="center", fontsize=8, transform=ax.transAxes)
                continue
            pixels = tile.detach().cpu().clamp(0, 1)
            if pixels.shape[0] == 1:
                ax.imshow(pixels[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(pixels.permute(1, 2, 0).numpy(), interpolation="nearest")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None


def image_grid(images: torch.Tensor, columns: int, path: Path, pad: int = 2, zoom: int = 2) -> None:
    """A PNG of ``images`` [N, C, H, W] in [0, 1] tiled ``columns`` wide."""
    import torch
    from PIL import Image

    images = images.detach().float().nan_to_num(0.0).clamp(0, 1)
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    canvas = torch.full((c, rows * (h + pad) + pad, columns * (w + pad) + pad), 0.5)
    for i, image in enumerate(images):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        canvas[:, top : top + h, left : left + w] = image
    pixels = (canvas * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels)
    picture = picture.resize((picture.width * zoom, picture.height * zoom), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def correction_grid(
    path: Path,
    images: torch.Tensor,
    edited: torch.Tensor,
    indices: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    labels: torch.Tensor,
    title: str,
    class_names: list[str] | None = None,
) -> None:
    """A PNG: one column per sample, rows original / edited / delta (x' - x,
    red where the edit added intensity, blue where it removed it, scaled per
    column to its largest |delta|). Drawn as one mosaic on one axes (fast).
    Classes are shown by ``class_names`` when the dataset has them."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _channels, height, width = images.shape[1:]
    pad, cols = 2, max(1, len(indices))
    canvas = np.ones((3 * (height + pad) + pad, cols * (width + pad) + pad, 3))
    bounds = []
    for col, i in enumerate(indices.tolist()):
        delta = (edited[i] - images[i]).mean(dim=0).numpy()
        bound = float(np.abs(delta).max()) or 1.0
        bounds.append(bound)
        tiles = [_rgb(images[i]), _rgb(edited[i]), colormaps["seismic"](0.5 + 0.5 * delta / bound)[..., :3]]
        left = pad + col * (width + pad)
        for row, tile in enumerate(tiles):
            top = pad + row * (height + pad)
            canvas[top : top + height, left : left + width] = tile
    fig = Figure(figsize=(1.1 * cols + 1.2, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([pad + col * (width + pad) + width / 2 for col in range(len(bounds))])
    ax.set_xticklabels([f"|δ|≤{b:.2f}" for b in bounds], fontsize=7)
    ax.set_yticks([pad + row * (height + pad) + height / 2 for row in range(3)])
    ax.set_yticklabels(["original", "edited", "x'-x\nred +, blue -"], fontsize=8)
    ax.tick_params(length=0)

    def name(label: torch.Tensor) -> str:
        return class_names[int(label)] if class_names else str(int(label))

    for col, i in enumerate(indices.tolist()):
        ax.text(
            pad + col * (width + pad) + width / 2,
            -1,
            f"label {name(labels[i])}\n{name(before[i])} → {name(after[i])}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_title(title, fontsize=9, pad=24)
    fig.tight_layout()
    with open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def _rgb(image: torch.Tensor) -> np.ndarray:
    import numpy as np

    picture = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[..., :3]


def acquired_grid(
    path: Path, images: torch.Tensor, labels: torch.Tensor, source_labels: torch.Tensor, title: str, columns: int = 8
) -> None:
    """A PNG of acquired images, each captioned ``oracle label / source label``
    (red where they differ: the edit left its source's class, by the oracle)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _channels, height, width = images.shape[1:]
    pad, cols = 2, max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / cols))
    cell_h = height + pad + 10  # room for the caption under each image
    canvas = np.ones((rows * cell_h + pad, cols * (width + pad) + pad, 3))
    for i in range(len(images)):
        top, left = pad + (i // cols) * cell_h, pad + (i % cols) * (width + pad)
        canvas[top : top + height, left : left + width] = _rgb(images[i])
    fig = Figure(figsize=(0.9 * cols + 0.6, 1.0 * rows + 0.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    for i in range(len(images)):
        top, left = pad + (i // cols) * cell_h, pad + (i % cols) * (width + pad)
        differs = int(labels[i]) != int(source_labels[i])
        ax.text(
            left + width / 2,
            top + height + 1,
            f"{int(labels[i])} / {int(source_labels[i])}",
            ha="center",
            va="top",
            fontsize=7,
            color="red" if differs else "black",
        )
    ax.set_title(f"{title}\n(oracle label / source label; red: they differ)", fontsize=8)
    fig.tight_layout()
    with open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
