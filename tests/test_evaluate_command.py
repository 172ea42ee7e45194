"""``probebench evaluate``: scores computed elsewhere become a run of the same schema."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from probebench.cli import app
from probebench.results import COLUMNS


def _random_logits(n=400, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), label] += 2.0
    return label, logits


def test_imported_scores_give_the_numbers_of_the_run_that_computed_them(runner, tiny_registry, tmp_path):
    registry = str(tiny_registry())
    computed = tmp_path / "computed"
    result = runner.invoke(app, ["run", "tiny", "--registry", registry, "--out", str(computed), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(computed / "scores.csv.gz")
    scores[["label", "prediction", "msp"]].assign(entropy=-scores["entropy"]).to_csv(tmp_path / "mine.csv", index=False)

    imported = tmp_path / "imported"
    args = ["evaluate", str(tmp_path / "mine.csv"), "--name", "tiny", "--higher-is-uncertain", "entropy"]
    args += ["--metrics", "accuracy,auroc,aupr-miss,fpr95", "--resamples", "50", "--dataset", "mnist-5k"]
    result = runner.invoke(app, [*args, "--classifier", "cnn", "--registry", registry, "--out", str(imported)])
    assert result.exit_code == 0, result.output

    theirs = pd.read_csv(computed / "results.csv", keep_default_na=False)
    ours = pd.read_csv(imported / "results.csv", keep_default_na=False)
    assert list(ours.columns) == COLUMNS
    merged = theirs.merge(ours, on=COLUMNS[:8], suffixes=("_run", "_imported"))
    assert len(merged) == len(theirs) == len(ours)
    # scores.csv.gz keeps every float exactly: re-evaluating it gives the run's numbers to the 6 digits they are
    # written with (at 7 digits, MSPs near 1 that differed became ties and moved aupr-miss by ~2e-4)
    for column in ("value", "ci_low", "ci_high"):
        assert np.allclose(
            merged[f"{column}_run"], merged[f"{column}_imported"], rtol=1e-5, atol=1e-9, equal_nan=True
        ), column
    head = json.loads((imported / "run.json").read_text())
    assert head["source"] == "imported"
    assert head["files"][0]["file"] == "mine.csv" and len(head["files"][0]["sha256"]) == 64
    assert head["metrics"]["fpr95"]["higher_is_better"] is False
    samples = pd.read_csv(imported / "scores.csv.gz")
    assert len(samples) == 300 and {"msp", "entropy", "hit", "index"} <= set(samples.columns)

    board = runner.invoke(app, ["leaderboard", str(computed), str(imported), "--metric", "auroc"])
    assert board.exit_code == 0, board.output


@pytest.mark.parametrize("suffix", ["npz", "csv", "parquet"])
def test_logits_files_get_every_logit_scorer(runner, tmp_path, suffix):
    label, logits = _random_logits()
    path = tmp_path / f"logits.{suffix}"
    if suffix == "npz":
        np.savez(path, label=label, logits=logits)
    else:
        frame = pd.DataFrame({"label": label, **{f"logit_{c}": logits[:, c] for c in range(logits.shape[1])}})
        frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(path), "--name", "logits", "--resamples", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert {"msp", "entropy", "margin", "max-logit", "energy"} <= set(table["method"])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    miss = logits.argmax(axis=1) != label
    auroc = table[(table["method"] == "msp") & (table["metric"] == "auroc")]["value"].item()
    assert auroc == pytest.approx(roc_auc_score(miss, -probs.max(axis=1)), abs=1e-5)
    accuracy = table[table["metric"] == "accuracy"]["value"].item()
    assert accuracy == pytest.approx(1 - miss.mean(), abs=1e-6)


def test_cells_and_seeds_come_from_columns(runner, tmp_path):
    label, logits = _random_logits(n=200)
    msp = np.exp(logits).max(axis=1) / np.exp(logits).sum(axis=1)
    frame = pd.DataFrame({"label": label, "prediction": logits.argmax(axis=1), "msp": msp})
    frame["seed"] = np.repeat([0, 1], 100)
    frame["corruption"], frame["severity"] = "noise", 3
    frame.to_csv(tmp_path / "cells.csv", index=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(tmp_path / "cells.csv"), "--name", "c", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(table["seed"]) == {0, 1} and set(table["corruption"]) == {"noise"} and (table["n"] == 100).all()


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda d: d.assign(msp=d["msp"].where(d.index != 3)), [], "column 'msp' has 1 NaN"),
        (lambda d: d.assign(label=d["label"].where(d.index != 7, 12)), ["--num-classes", "5"], "label 12 at row 7"),
        (lambda d: d.assign(label=-1), [], "label -1 at row 0 is outside >= 0"),
        (lambda d: d.drop(columns="prediction"), [], "no 'prediction' column and no logits"),
        (lambda d: d, ["--higher-is-uncertain", "msq"], "no such method column (did you mean 'msp'?)"),
        (lambda d: d, ["--metrics", "aurok"], "unknown metric 'aurok'"),
    ],
)
def test_bad_score_files_are_one_line_errors(runner, tmp_path, make, args, message):
    label, logits = _random_logits(n=50)
    frame = pd.DataFrame({"label": label, "prediction": logits.argmax(axis=1), "msp": logits.max(axis=1)})
    make(frame).to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(tmp_path / "bad.csv"), "--name", "b", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_npz_arrays_of_different_lengths_are_an_error(runner, tmp_path):
    np.savez(tmp_path / "s.npz", label=np.zeros(5, int), prediction=np.zeros(4, int), msp=np.ones(5))
    result = runner.invoke(app, ["evaluate", str(tmp_path / "s.npz"), "--name", "b"])
    assert result.exit_code == 2 and "arrays differ in length" in result.output
