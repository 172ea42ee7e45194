"""Tied-best marks: the paired bootstrap test and Holm's correction against direct
implementations, and what a leaderboard bolds for a clearly worse and an identical method."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from probebench.cli import app
from probebench.evaluate import Resamples, bootstrap_indices, bootstrap_values
from probebench.plugins.metrics.failure import AUROC
from probebench.significance import holm_rejected, paired_pvalue, seed_draws, seed_resampled, tied_best


def _scores(n=300, seed=0):
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < 0.8
    good = hit + rng.normal(scale=0.8, size=n)
    weak = hit + rng.normal(scale=2.5, size=n)
    return hit, good, weak


def test_paired_bootstrap_equals_a_direct_loop_over_the_same_resamples():
    hit, good, weak = _scores()
    indices = bootstrap_indices(len(hit), 400, seed=3)
    values = bootstrap_values({"auroc": AUROC()}, good, hit, Resamples.from_indices(indices, len(hit)))["auroc"]
    other = bootstrap_values({"auroc": AUROC()}, weak, hit, Resamples.from_indices(indices, len(hit)))["auroc"]

    # the reference: one resample at a time, scikit-learn's AUROC of the miss on -confidence
    diffs = []
    for b, rows in enumerate(indices):
        miss = ~hit[rows]
        a = roc_auc_score(miss, -good[rows])
        c = roc_auc_score(miss, -weak[rows])
        assert values[b] == pytest.approx(a, abs=1e-9) and other[b] == pytest.approx(c, abs=1e-9)
        diffs.append(a - c)
    diffs = np.array(diffs)
    expected = min(1.0, 2 * (1 + min(np.sum(diffs <= 0), np.sum(diffs >= 0))) / (len(diffs) + 1))
    assert paired_pvalue(values, other) == pytest.approx(expected, abs=1e-12)


def test_paired_pvalue_of_identical_methods_is_one_and_of_a_dominated_one_its_floor():
    rng = np.random.default_rng(0)
    replicates = rng.random(999)
    assert paired_pvalue(replicates, replicates) == 1.0
    assert paired_pvalue(replicates + 0.1, replicates) == pytest.approx(2 / 1000)
    assert np.isnan(paired_pvalue(np.full(5, np.nan), replicates[:5]))


def test_holm_rejects_what_the_adjusted_pvalues_reject():
    rng = np.random.default_rng(1)
    for trial in range(200):
        k = int(rng.integers(1, 12))
        p = rng.random(k) ** 3
        alpha = 0.05
        # reference: Holm-adjusted p-values, p_adj(i) = max_{j<=i} min(1, (k - j + 1) p_(j)) in sorted order
        order = np.argsort(p, kind="stable")
        adjusted = np.maximum.accumulate(np.minimum(1, (k - np.arange(k)) * p[order]))
        expected = {int(order[i]) for i in range(k) if adjusted[i] <= alpha}
        assert holm_rejected(dict(enumerate(p)), alpha) == expected, trial


def test_seed_resampling_equals_a_direct_loop():
    rng = np.random.default_rng(2)
    per_seed = rng.random((3, 50))
    draws = seed_draws(3, 50, seed=0)
    direct = [np.mean([per_seed[s, b] for s in draws[b]]) for b in range(50)]
    assert np.allclose(seed_resampled(per_seed, draws), direct, atol=1e-12)
    assert np.array_equal(seed_resampled(per_seed[:1], draws), per_seed[0])


def test_tied_best_keeps_the_identical_method_and_drops_the_clearly_worse():
    rng = np.random.default_rng(4)
    best = 0.9 + rng.normal(scale=0.01, size=500)
    values = {"best": 0.9, "copy": 0.9 - 1e-6, "worse": 0.7, "no-replicates": 0.8}
    replicates = {"best": best, "copy": best, "worse": best - 0.2, "no-replicates": None}
    assert tied_best(values, replicates, higher_is_better=True, alpha=0.05) == {"best", "copy"}
    assert tied_best(values, replicates, higher_is_better=True, alpha=0) == {"best"}
    lower = {k: -v for k, v in values.items()}
    flipped = {k: (None if v is None else -v) for k, v in replicates.items()}
    assert tied_best(lower, flipped, higher_is_better=False, alpha=0.05) == {"best", "copy"}


def _imported_run(runner, tmp_path, seeds=(0,)):
    """A run folder made by `probebench evaluate` from scores: msp, an exact copy, a
    method that is clearly worse, and one whose scores are noise."""
    frames = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        n = 600
        label = rng.integers(0, 10, n)
        hit = rng.random(n) < 0.85
        prediction = np.where(hit, label, (label + 1) % 10)
        msp = np.clip(0.6 + 0.35 * hit + rng.normal(scale=0.1, size=n), 0, 1)
        worse = np.clip(0.6 + 0.1 * hit + rng.normal(scale=0.2, size=n), 0, 1)
        frames.append(
            pd.DataFrame(
                {"seed": seed, "label": label, "prediction": prediction, "msp": msp, "copy": msp, "worse": worse}
            )
        )
    pd.concat(frames).to_csv(tmp_path / "scores.csv", index=False)
    out = tmp_path / "run"
    args = ["evaluate", str(tmp_path / "scores.csv"), "--name", "t", "--metrics", "accuracy,auroc,aurc"]
    result = runner.invoke(app, [*args, "--resamples", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _bold(markdown: str, method: str) -> list[bool]:
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip().startswith("**") for cell in row.strip("|").split("|")[1:]]


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_leaderboard_bolds_the_identical_copy_and_not_the_clearly_worse(runner, tmp_path, seeds):
    run = _imported_run(runner, tmp_path, seeds)
    result = runner.invoke(app, ["leaderboard", str(run), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert _bold(result.output, "msp") == [True, True]
    assert _bold(result.output, "copy") == [True, True]
    assert _bold(result.output, "worse") == [False, False]
    over_seeds = " and over seeds" if len(seeds) > 1 else ""
    assert f"paired bootstrap over the same 300 test resamples{over_seeds}, Holm-corrected" in result.output
    assert "α = 0.05" in result.output


def test_alpha_zero_bolds_only_the_best_and_says_so(runner, tmp_path):
    run = _imported_run(runner, tmp_path)
    result = runner.invoke(app, ["leaderboard", str(run), "--format", "markdown", "--alpha", "0"])
    assert result.exit_code == 0, result.output
    assert "bold: best value" in result.output and "Holm" not in result.output
    assert _bold(result.output, "copy") == [True, True]  # equal to the best to the last digit: best too


def test_a_value_that_its_replicates_do_not_belong_to_is_never_declared_tied(runner, tmp_path):
    run = _imported_run(runner, tmp_path)
    table = pd.read_csv(run / "results.csv", keep_default_na=False)
    worse = (table["method"] == "worse") & (table["metric"] == "auroc")
    table.loc[worse, "value"] = table.loc[(table["method"] == "msp") & (table["metric"] == "auroc"), "value"].iloc[0]
    table.loc[worse, "value"] -= 0.001  # edited by hand: close to the best, not what its scores give
    table.to_csv(run / "results.csv", index=False)
    result = runner.invoke(app, ["leaderboard", str(run), "--format", "markdown", "--metric", "auroc"])
    assert result.exit_code == 0, result.output
    assert _bold(result.output, "worse") == [False]
    assert re.search(r"1 value\(s\) differ from the value their bootstrap replicates belong to", result.output)


@pytest.mark.parametrize("command", ["leaderboard", "publish", "report"])
def test_a_bad_alpha_is_one_line_and_exit_2(runner, tmp_path, command):
    run = _imported_run(runner, tmp_path)
    args = [command, "--alpha", "1.5"] + ([str(run)] if command != "publish" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--alpha must lie in [0, 1)" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_publish_says_how_ties_were_decided_over_seeds(runner, tiny_registry, tmp_path):
    from tests.test_publish_guard import published

    _, _, out, _ = published(runner, tiny_registry, tmp_path)
    page = out.read_text()
    sentence = r"paired bootstrap over the same \d+ test resamples and over seeds, Holm-corrected across the column"
    assert re.search(sentence, page) and "α = 0.05" in page
    assert "**bold**: best in its column and every value not" in page


def _close_call_run(runner, tmp_path):
    """`probebench evaluate` of one seed's scores: msp, a noisier copy of it (close:
    the test has to decide), a weaker method and a clearly worse one."""
    rng = np.random.default_rng(7)
    n = 500
    label = rng.integers(0, 10, n)
    hit = rng.random(n) < 0.85
    msp = 0.6 + 0.35 * hit + rng.normal(scale=0.12, size=n)
    frame = pd.DataFrame(
        {
            "label": label,
            "prediction": np.where(hit, label, (label + 1) % 10),
            "msp": msp,
            "noisier": msp + rng.normal(scale=0.02, size=n),
            "weaker": 0.6 + 0.3 * hit + rng.normal(scale=0.16, size=n),
            "worse": 0.6 + 0.1 * hit + rng.normal(scale=0.2, size=n),
        }
    )
    frame.to_csv(tmp_path / "scores.csv", index=False)
    out = tmp_path / "run"
    args = ["evaluate", str(tmp_path / "scores.csv"), "--name", "t", "--metrics", "accuracy,auroc"]
    result = runner.invoke(app, [*args, "--resamples", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, frame, hit


METHODS = ["msp", "noisier", "weaker", "worse"]


def test_the_run_keeps_the_replicates_its_intervals_were_taken_over(runner, tmp_path):
    from probebench.evaluate import percentile_interval
    from probebench.results import load_replicates

    run, frame, hit = _close_call_run(runner, tmp_path)
    kept = load_replicates(run)
    table = pd.read_csv(run / "results.csv", keep_default_na=False)
    indices = bootstrap_indices(len(hit), 300, seed=0)  # the suite's bootstrap seed (default 0)
    for method in METHODS:
        vector, value = kept[("t", "imported", "none", "0", "imported", "0", method, "auroc")]
        # the reference: scikit-learn's AUROC of the miss on -confidence, one resample at a time
        confidence = frame[method].to_numpy()
        expected = [roc_auc_score(~hit[rows], -confidence[rows]) for rows in indices]
        assert np.allclose(vector, expected, rtol=0, atol=1e-9)
        row = table[(table["method"] == method) & (table["metric"] == "auroc")].iloc[0]
        low, high = percentile_interval(vector, 0.95)
        assert [row["value"], row["ci_low"], row["ci_high"]] == pytest.approx([value, low, high], rel=1e-5)
    accuracy, _ = kept[("t", "imported", "none", "0", "imported", "0", "-", "accuracy")]
    assert np.allclose(accuracy, [hit[rows].mean() for rows in indices], atol=1e-12)


def test_tie_marks_equal_a_plain_paired_bootstrap_with_holm_and_evaluate_no_metric_again(runner, tmp_path):
    from probebench import results
    from probebench.registry import Registry
    from probebench.report import leaderboard as board
    from probebench.report.ties import Replicates, Ties, registry_metrics
    from tests.conftest import builtin_modules

    run, frame, hit = _close_call_run(runner, tmp_path)
    table, heads = results.combine([run])
    made = registry_metrics(Registry(builtin_modules(), autoload=False))
    asked: list[str] = []

    def counting(name):  # every metric the tie test would evaluate again passes here
        asked.append(name)
        return made(name)

    ties = Ties(0.05, Replicates({run.name: run}, heads, counting))
    (section,) = board.sections(table, board.View(["method"], ["metric"], ["auroc"]), heads, ties=ties)
    tied = {row for row, column in section.marked}
    assert asked == []  # the run's replicates were differenced: no metric made, none evaluated, no second pass

    # the reference, written plainly: the same resample indices, paired differences to the best, Holm
    indices = bootstrap_indices(len(hit), 300, seed=0)
    full = {m: roc_auc_score(~hit, -frame[m].to_numpy()) for m in METHODS}
    per_resample = {m: np.array([roc_auc_score(~hit[r], -frame[m].to_numpy()[r]) for r in indices]) for m in METHODS}
    best = max(full, key=full.__getitem__)
    pvalues = {}
    for method in METHODS:
        if method != best:
            diff = per_resample[best] - per_resample[method]
            pvalues[method] = min(1.0, 2 * (1 + min(np.sum(diff <= 0), np.sum(diff >= 0))) / (len(diff) + 1))
    expected = {best}
    ordered = sorted(pvalues, key=pvalues.__getitem__)
    for rank, method in enumerate(ordered):
        if pvalues[method] > 0.05 / (len(ordered) - rank):
            expected |= set(ordered[rank:])  # Holm stops at the first hypothesis it cannot reject
            break
    assert tied == expected
    assert 1 < len(expected) < len(METHODS)  # the case is not trivial: some tied, some not
