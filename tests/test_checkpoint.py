"""The ``checkpoint`` classifier: a model trained elsewhere, saved as a state_dict,
TorchScript or torch.export file, gives the scores of the same model in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import probebench
from probebench.errors import UserError

DATASET = {"name": "mnist-5k", "limit": 300}
CNN = {"name": "cnn", "epochs": 3, "width": 8}
# every scorer that needs no second trained model; the prober learns from the classifier's own training outcomes
SCORERS = [
    "msp",
    "entropy",
    "margin",
    "max-logit",
    "energy",
    "doctor",
    {"name": "odin", "temperature": 10.0, "epsilon": 0.001},
    "mc-dropout:pe",
    "grad-norm",
    "gradtrust:counterfactual",
    "gradtrust:demo",
    {"name": "prober", "source": "train", "prober_options": {"epochs": 2}},
    {"name": "knn", "k": 5},
    "mahalanobis",
]
LAYERED = {"prober", "knn", "mahalanobis"}  # read a hidden layer (fc_layer.4)


def suite(classifier: dict, scorers: list = SCORERS) -> dict:
    return {
        "dataset": DATASET,
        "classifier": classifier,
        "scorers": scorers,
        "metrics": ["auroc"],
        "seeds": [0],
        "bootstrap": {"resamples": 0},
    }


def score_table(run: probebench.Run) -> dict[str, np.ndarray]:
    assert run.scores is not None
    frame = run.scores[run.scores.corruption == "none"].sort_values("index")
    methods = frame.columns[list(frame.columns).index("hit") + 1 :]  # one column per scorer after the outcome
    return {method: frame[method].to_numpy() for method in methods}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """A 1-epoch cnn trained by probebench (in memory), its scores, and the model saved three ways."""
    folder = tmp_path_factory.mktemp("checkpoint")
    cache = folder / "cache"
    run = probebench.run(suite(CNN), cache_dir=cache, out=folder / "trained")
    (weights_file,) = (cache / "classifier").glob("*.pt")
    state = torch.load(weights_file, weights_only=True)["state_dict"]
    torch.save(state, folder / "model.pt")

    from probebench.plugins.classifiers._cnn_net import CNNNet

    model = CNNNet(10, (1, 28, 28), width=8).eval()
    model.load_state_dict(state)
    torch.jit.script(model).save(str(folder / "model.ts"))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(folder / "model.pt2"))
    return {"folder": folder, "cache": cache, "scores": score_table(run)}


def run_checkpoint(saved: dict, classifier: dict, name: str, scorers: list = SCORERS) -> probebench.Run:
    return probebench.run(suite(classifier, scorers), cache_dir=saved["cache"], out=saved["folder"] / name)


FORMS = {
    "state_dict": {"path": "model.pt", "arch": "cnn", "arch_options": {"width": 8}},
    "export": {"path": "model.pt2"},
    "torchscript": {"path": "model.ts"},
}
# what cannot run on each form: its dropout is compiled in (export, TorchScript); no hooks fire (TorchScript)
CANNOT = {
    "state_dict": {},
    "export": {
        "mc-dropout:pe": "has no dropout layer",
        "grad-norm": "a torch.export model replaces",
        "gradtrust:counterfactual": "a torch.export model replaces",
    },
    "torchscript": {
        "mc-dropout:pe": "has no dropout layer",
        "grad-norm": "TorchScript model does not expose",
        "gradtrust:demo": "TorchScript model does not expose",
        "prober": "TorchScript model does not expose",
        "knn": "TorchScript model does not expose",
    },
}


def checkpoint(saved: dict, form: str) -> dict:
    return {"name": "checkpoint", **FORMS[form], "path": str(saved["folder"] / FORMS[form]["path"])}


def label(spec: str | dict) -> str:
    return spec if isinstance(spec, str) else spec["name"]


@pytest.mark.parametrize("form", FORMS)
def test_a_saved_model_scores_as_the_model_in_memory(saved, form):
    scorers = [spec for spec in SCORERS if label(spec) not in CANNOT[form]]
    if form != "state_dict":
        scorers = [spec for spec in scorers if not label(spec).startswith("grad")]
    if form == "torchscript":
        scorers = [spec for spec in scorers if label(spec) not in LAYERED]
    run = run_checkpoint(saved, checkpoint(saved, form), form, scorers)
    scores = score_table(run)
    assert not run.meta["failures"]
    assert set(scores) == {label(spec) for spec in scorers}
    for method, values in scores.items():
        # float64 gradients: equal up to the float32 rounding of another graph of the same model
        np.testing.assert_allclose(values, saved["scores"][method], rtol=1e-4, atol=1e-5, err_msg=method)


@pytest.mark.parametrize("form, scorer", [(form, scorer) for form in CANNOT for scorer in CANNOT[form]])
def test_a_scorer_that_cannot_run_on_a_saved_form_is_a_one_line_error(saved, form, scorer):
    spec = next(spec for spec in SCORERS if label(spec) == scorer)
    with pytest.raises(UserError, match=CANNOT[form][scorer]) as error:
        run_checkpoint(saved, checkpoint(saved, form), f"{form}-{scorer}", [spec])
    assert "\n" not in str(error.value)


def test_the_cache_key_follows_the_file_content(saved, tmp_path):
    path = tmp_path / "model.pt"
    state = torch.load(saved["folder"] / "model.pt", weights_only=True)
    torch.save(state, path)
    classifier = {"name": "checkpoint", "path": str(path), "arch": "cnn", "arch_options": {"width": 8}}
    before = run_checkpoint(saved, classifier, "before", ["msp"])
    state["fc_layer.6.bias"] = state["fc_layer.6.bias"] + torch.arange(10.0)
    torch.save(state, path)
    after = run_checkpoint(saved, classifier, "after", ["msp"])
    assert not np.allclose(score_table(before)["msp"], score_table(after)["msp"])


def test_an_ensemble_on_a_loaded_model_is_a_one_line_error(saved):
    with pytest.raises(UserError, match="loads fixed weights: it cannot train another model"):
        run_checkpoint(saved, checkpoint(saved, "torchscript"), "ensemble", ["ensemble:msp"])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"arch_options": {"width": 16}},
            r"conv_layer.0.weight has shape \[8, 1, 3, 3\] in the file but \[16, 1, 3, 3\]",
        ),
        ({"arch": "timm:resnet18"}, "keys do not fit arch 'timm:resnet18': missing conv1.weight"),
        ({"arch": "no_such_pkg.models:build"}, "cannot import 'no_such_pkg.models'"),
        ({"arch": "nonsense"}, "neither a classifier"),
    ],
)
def test_a_mismatched_checkpoint_is_a_one_line_error(saved, change, message):
    classifier = {"name": "checkpoint", "path": str(saved["folder"] / "model.pt"), "arch": "cnn", **change}
    if "arch_options" not in change:
        classifier["arch_options"] = {"width": 8} if classifier["arch"] == "cnn" else {}
    with pytest.raises(UserError, match=message) as error:
        run_checkpoint(saved, classifier, "bad", ["msp"])
    assert "\n" not in str(error.value)


def test_a_model_for_other_classes_names_the_class_count(saved, tmp_path):
    state = torch.load(saved["folder"] / "model.pt", weights_only=True)
    state["fc_layer.6.weight"], state["fc_layer.6.bias"] = state["fc_layer.6.weight"][:3], state["fc_layer.6.bias"][:3]
    torch.save(state, tmp_path / "three.pt")
    classifier = {"name": "checkpoint", "path": str(tmp_path / "three.pt"), "arch": "cnn", "arch_options": {"width": 8}}
    with pytest.raises(UserError, match="fc_layer.6.weight has 3 outputs but the dataset has 10 classes"):
        run_checkpoint(saved, classifier, "bad", ["msp"])


def test_a_scripted_model_for_other_images_names_the_input_shape(saved, tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    torch.jit.script(model).save(str(tmp_path / "rgb.ts"))
    with pytest.raises(UserError, match=r"does not take the dataset's images \[N, 1, 28, 28\]"):
        run_checkpoint(saved, {"name": "checkpoint", "path": str(tmp_path / "rgb.ts")}, "bad", ["msp"])


def test_a_pickled_whole_model_is_refused_by_weights_only(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")
    with pytest.raises(UserError, match="holds more than tensors"):
        from probebench.plugins.classifiers._checkpoint_load import read_state_dict

        read_state_dict(Path(tmp_path / "whole.pt"))


@pytest.mark.parametrize("form", FORMS)
def test_layers_lists_a_saved_models_module_names(saved, runner, form):
    from probebench.cli import app

    arguments = ["layers", "--checkpoint", str(saved["folder"] / FORMS[form]["path"]), "--dataset", "mnist-5k"]
    if form == "state_dict":
        wrong_width = runner.invoke(app, [*arguments, "--arch", "cnn"])
        assert wrong_width.exit_code == 2 and "in the file but" in wrong_width.output
        arguments += ["--arch", "cnn", "--arch-options", "width = 8"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "fc_layer.4" in result.output
    if form != "torchscript":
        assert "[N, 256]" in result.output
    else:
        assert "runs no forward hooks" in result.output
