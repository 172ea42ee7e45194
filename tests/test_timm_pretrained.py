"""``timm`` with ``pretrained_file``: weights from a local .safetensors file, for
evaluation (epochs = 0) or fine-tuning; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import probebench
from probebench.errors import UserError
from probebench.pipeline.train import weights_digests
from probebench.registry import Registry
from probebench.suite import load_config

ARCH = "timm:test_resnet"  # timm's own tiny ResNet for tests


@pytest.fixture
def registry() -> Registry:
    return Registry(load_config(None).builtin)


def saved_weights(path, num_classes: int, in_chans: int, seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=num_classes, in_chans=in_chans)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return state


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail the test


def test_epochs_0_evaluates_the_files_weights_as_they_are(registry, tmp_path):
    state = saved_weights(tmp_path / "w.safetensors", 10, 1)
    component = registry.create("classifier", ARCH, {"pretrained_file": str(tmp_path / "w.safetensors"), "epochs": 0})
    model = component.build(10, (1, 28, 28))
    assert component.trains is False
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_the_file_content_is_in_the_cache_key(registry, tmp_path):
    path = tmp_path / "w.safetensors"
    saved_weights(path, 10, 1, seed=0)
    component = registry.create("classifier", ARCH, {"pretrained_file": str(path)})
    before = weights_digests(component)
    saved_weights(path, 10, 1, seed=1)
    assert weights_digests(component) != before
    assert weights_digests(registry.create("classifier", ARCH)) == []  # untrained timm keys stay as they were


def test_imagenet_weights_are_fine_tuned_on_mnist_with_a_new_head(tmp_path):
    saved_weights(tmp_path / "imagenet.safetensors", 1000, 3)
    classifier = {"name": ARCH, "pretrained_file": str(tmp_path / "imagenet.safetensors"), "epochs": 1}
    suite = {
        "dataset": {"name": "mnist-5k", "limit": 300},
        "classifier": classifier,
        "scorers": ["msp"],
        "metrics": ["accuracy", "auroc"],
        "bootstrap": {"resamples": 0},
    }
    run = probebench.run(suite, out=tmp_path / "run")
    # a 1000-class, 3-channel file became a 10-class, 1-channel model: it ran and was evaluated
    assert set(run.results.metric) == {"accuracy", "auroc"} and not run.meta["failures"]
    assert run.meta["suite"]["classifier"]["options"]["pretrained_file"].endswith("imagenet.safetensors")


def test_a_head_for_other_classes_cannot_be_evaluated_as_it_is(registry, tmp_path):
    saved_weights(tmp_path / "imagenet.safetensors", 1000, 1)
    component = registry.create(
        "classifier", ARCH, {"pretrained_file": str(tmp_path / "imagenet.safetensors"), "epochs": 0}
    )
    with pytest.raises(UserError, match="has 1000 outputs in fc.weight but the dataset has 10 classes"):
        component.build(10, (1, 28, 28))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pretrained_file": "missing.safetensors"}, "is not an existing .safetensors file"),
        ({"epochs": 0}, "0 evaluates a pretrained_file"),
    ],
)
def test_bad_pretrained_options_are_one_line_errors(registry, options, message):
    with pytest.raises(UserError, match=message):
        registry.create("classifier", ARCH, options)


def test_weights_of_another_architecture_name_the_mismatch(registry, tmp_path):
    save_file({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, str(tmp_path / "other.safetensors"))
    component = registry.create("classifier", ARCH, {"pretrained_file": str(tmp_path / "other.safetensors")})
    with pytest.raises(UserError, match="does not fit 'test_resnet'"):
        component.build(10, (1, 28, 28))
