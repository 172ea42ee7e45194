"""The Python API: docs/api.md's examples run, and `import probebench` stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import probebench
from probebench.errors import UserError
from tests.conftest import REPO
from tests.test_docs import runnable_blocks

API_GUIDE = REPO / "docs" / "api.md"


def test_the_guide_documents_every_public_function():
    text = API_GUIDE.read_text()
    for name in probebench.__all__:
        if name != "__version__":
            assert f"probebench.{name}" in text or f"`{name}`" in text, name


def test_api_guide_examples_run_in_order_as_in_a_notebook():
    blocks = runnable_blocks(API_GUIDE.read_text())
    assert len(blocks) >= 2
    for line, code in blocks:  # later blocks read the folders earlier ones wrote
        exec(compile(code, f"{API_GUIDE}:{line}", "exec"), {"__name__": "api_example"})


def test_import_probebench_imports_neither_torch_nor_pandas():
    code = "import sys, probebench; heavy = [m for m in ('torch', 'pandas', 'numpy') if m in sys.modules]; assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_agrees_with_sklearn_and_pairs_methods():
    rng = np.random.default_rng(1)
    hit = rng.random(500) < 0.8
    confidence = hit + rng.normal(scale=1.0, size=500)
    table = probebench.evaluate({"a": confidence, "b": -confidence}, hit, metrics=["auroc"], bootstrap=100)
    a = table.query("method == 'a'").iloc[0]
    assert a.value == pytest.approx(roc_auc_score(~hit, -confidence), abs=1e-9)
    b = table.query("method == 'b'").iloc[0]
    # the same resamples for both methods: b's interval mirrors a's
    assert b.ci_low == pytest.approx(1 - a.ci_high, abs=1e-9) and b.ci_high == pytest.approx(1 - a.ci_low, abs=1e-9)


@pytest.mark.parametrize(
    "confidence, hit, message",
    [
        (np.array([0.1, np.nan, 0.3]), np.array([1, 0, 1]), "NaN"),
        (np.array([0.1, 0.2]), np.array([1, 0, 1]), "has 2 values but hit has 3"),
    ],
)
def test_evaluate_rejects_bad_arrays(confidence, hit, message):
    with pytest.raises(UserError, match=message):
        probebench.evaluate(confidence, hit)


def test_load_run_of_a_folder_without_results_is_an_error(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        probebench.load_run(tmp_path)


def test_a_dict_suite_with_an_unknown_key_is_a_one_line_error():
    with pytest.raises(UserError, match="unknown key 'scorer'"):
        probebench.run({"dataset": "mnist-5k", "classifier": "cnn", "scorer": ["msp"], "metrics": ["auroc"]})


def test_version_and_short_help(runner):
    from probebench.cli import app

    assert runner.invoke(app, ["--version"]).output.strip() == f"probebench {probebench.__version__}"
    short = runner.invoke(app, ["-h"])
    assert short.exit_code == 0 and "evaluate" in short.output


def test_leaderboard_of_imported_scores(tmp_path):
    frame = pd.DataFrame({"label": [0, 1, 1, 0, 1, 0], "prediction": [0, 1, 0, 0, 1, 1]})
    frame["msp"] = [0.9, 0.8, 0.3, 0.7, 0.95, 0.4]
    frame.to_csv(tmp_path / "s.csv", index=False)
    run = probebench.import_scores(tmp_path / "s.csv", "six", out=tmp_path / "run", bootstrap=0)
    board = probebench.leaderboard(run, metrics=["auroc"])
    assert board.loc["msp", "auroc"] == pytest.approx(1.0)
