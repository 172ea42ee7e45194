"""Figures are drawn once per key of their inputs and copied from the artifact store afterwards."""

from __future__ import annotations

import torch

from probebench.cache import ArtifactStore, content_digest
from probebench.figures import cached_figures, figure_key
from probebench.report.grids import image_grid


def test_a_figure_is_drawn_once_per_key_and_copied_byte_for_byte(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    drawn = []

    def draw(images):
        def into(paths):
            drawn.append(len(images))
            image_grid(images, 4, paths[0])
            image_grid(1 - images, 4, paths[1])

        return into

    images = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    key = figure_key("test-grid", content_digest(images))
    first = [tmp_path / "a" / "grid.png", tmp_path / "a" / "inverse.png"]
    cached_figures(store, key, first, draw(images))
    second = [tmp_path / "b" / "grid.png", tmp_path / "b" / "inverse.png"]
    cached_figures(store, key, second, draw(images))
    assert drawn == [8]
    assert [p.read_bytes() for p in second] == [p.read_bytes() for p in first]
    assert first[0].read_bytes() != first[1].read_bytes()

    # other pixels are another key: drawn anew, a different picture
    other = images.clone()
    other[0, 0, 0, 0] = 1 - other[0, 0, 0, 0]
    other_key = figure_key("test-grid", content_digest(other))
    assert other_key != key
    third = [tmp_path / "c" / "grid.png", tmp_path / "c" / "inverse.png"]
    cached_figures(store, other_key, third, draw(other))
    assert drawn == [8, 8] and third[0].read_bytes() != first[0].read_bytes()

    # a damaged cached figure is redrawn, not copied
    store.path("figure", key).write_bytes(b"garbage")
    fourth = [tmp_path / "d" / "grid.png", tmp_path / "d" / "inverse.png"]
    cached_figures(store, key, fourth, draw(images))
    assert drawn == [8, 8, 8] and fourth[0].read_bytes() == first[0].read_bytes()


def test_content_digest_sees_values_dtypes_and_shapes():
    values = torch.arange(6)
    assert content_digest(values) == content_digest(values.clone().numpy())
    assert content_digest(values) != content_digest(values.float())
    assert content_digest(values) != content_digest(values.view(2, 3))
    assert content_digest(values[:3], values[3:]) != content_digest(values[:2], values[2:])
