"""registry.toml suites: parsing and one-line validation errors."""

import pytest

from probebench.errors import UserError
from probebench.registry import Registry
from probebench.suite import load_config, parse_suite
from tests.conftest import REPO, builtin_modules


@pytest.fixture
def registry():
    return Registry(builtin_modules())


def write(tmp_path, body: str):
    path = tmp_path / "registry.toml"
    path.write_text("[plugins]\nbuiltin = []\n" + body)
    return load_config(path)


BASE = '[suite.s]\ndataset = "mnist-5k"\nclassifier = "cnn"\nscorers = ["msp"]\nmetrics = ["auroc"]\n'


def test_default_suite_parses_and_validates(registry):
    suite = parse_suite(load_config(REPO / "registry.toml"), "mnist-quick", registry)
    assert suite.dataset.name == "mnist-5k"
    assert "msp" in [s.name for s in suite.scorers]


def test_component_tables_carry_options_and_labels(tmp_path, registry):
    config = write(
        tmp_path, BASE.replace('classifier = "cnn"', 'classifier = { name = "cnn", epochs = 2, label = "cnn-2" }')
    )
    suite = parse_suite(config, "s", registry)
    assert suite.classifier.options == {"epochs": 2}
    assert suite.classifier.label == "cnn-2"


@pytest.mark.parametrize(
    "body, message",
    [
        (BASE + "scorer = []\n", r"suite 's': unknown key 'scorer' \(did you mean 'scorers'"),
        (BASE + "seeds = 3\n", r"key 'seeds' must be a list"),
        (BASE + "seeds = [-1]\n", r"'seeds' must be a non-empty list of non-negative"),
        (BASE.replace('["msp"]', '["mps"]'), r"suite 's': unknown scorer 'mps' \(did you mean 'msp'"),
        (BASE.replace('"cnn"', '{ name = "cnn", epochs = "x" }'), r"option 'epochs' must be int"),
        (BASE.replace('metrics = ["auroc"]\n', ""), r"missing key 'metrics'"),
        (BASE + "bootstrap = { resample = 3 }\n", r"unknown bootstrap key 'resample'"),
    ],
)
def test_bad_suites_fail_in_one_line(tmp_path, registry, body, message):
    with pytest.raises(UserError, match=message) as info:
        parse_suite(write(tmp_path, body), "s", registry)
    assert "\n" not in str(info.value)


def test_unknown_suite_suggests(tmp_path, registry):
    with pytest.raises(UserError, match=r"unknown suite 'S' .*suites: s"):
        parse_suite(write(tmp_path, BASE), "S", registry)


def test_malformed_toml_names_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[plugins]\nbuiltin = [1,,2]\n")
    with pytest.raises(UserError, match=r"bad.toml: malformed TOML: .*line"):
        load_config(path)


def test_every_shipped_suite_validates(registry):
    config = load_config(REPO / "registry.toml")
    assert {"mnist-quick", "mnist-cure", "mnist-correction"} <= set(config.suites)
    for name in config.suites:
        parse_suite(config, name, registry)


def test_validation_holds_out_the_same_training_images_for_every_seed(tmp_path, registry):
    """``validation = N`` moves N training images (a fixed draw) to a split
    that nothing trains on; training keys change only when N > 0."""
    import torch

    from probebench.pipeline.data import load_splits
    from probebench.pipeline.train import classifier_key
    from probebench.results import config_hash

    path = tmp_path / "registry.toml"
    path.write_text(
        '[suite.s]\ndataset = "mnist-5k"\nclassifier = "cnn"\nscorers = ["msp"]\nmetrics = ["auroc"]\n'
        'validation = 500\n[suite.bad]\ndataset = "mnist-5k"\nclassifier = "cnn"\nscorers = ["msp"]\n'
        'metrics = ["auroc"]\nvalidation = -1\n'
    )
    suite = parse_suite(load_config(path), "s", registry)
    assert suite.validation == 500
    with pytest.raises(UserError, match=r"'validation' \(training images held out\) must be >= 0, got -1"):
        parse_suite(load_config(path), "bad", registry)

    whole = load_splits(registry, suite.dataset, None)
    split = load_splits(registry, suite.dataset, None, 500)
    assert (
        split.validation == 500 and whole.validation == 0 and len(split.train_labels) == len(whole.train_labels) - 500
    )
    together = torch.cat([split.train_images, split.val_images]).flatten(1).double()
    assert torch.allclose(together.sum(0), whole.train_images.flatten(1).double().sum(0))  # a partition
    assert torch.equal(torch.cat([split.train_labels, split.val_labels]).bincount(), whole.train_labels.bincount())
    assert torch.equal(load_splits(registry, suite.dataset, None, 500).val_labels, split.val_labels)
    with pytest.raises(UserError, match="has only 4000 training images"):
        load_splits(registry, suite.dataset, None, 4000)

    plain = dict(suite.as_dict(), validation=0)
    assert config_hash(plain) == config_hash({k: v for k, v in plain.items() if k != "validation"})
    assert config_hash(suite.as_dict()) != config_hash(plain)
    assert (
        classifier_key(registry, suite.dataset, suite.classifier, 0, data="d")
        == classifier_key(registry, suite.dataset, suite.classifier, 0, None, 0, data="d")
        != classifier_key(registry, suite.dataset, suite.classifier, 0, None, 500, data="d")
    )
