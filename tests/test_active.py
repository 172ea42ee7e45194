"""The active-learning stage: the suite's `active` table, the pool held out of
training, the built-in acquirers and oracles, and a 2-round run end to end."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from probebench.cli import app
from probebench.errors import UserError
from probebench.suite import load_config, parse_suite
from probebench.testing import registry_with, tiny_context, tiny_images

ACTIVE_SUITE = """
[suite.tiny-active]
dataset = {{ name = "mnist-5k", limit = 300 }}
classifier = {{ name = "cnn", epochs = 1, width = 8 }}
scorers = ["msp"]
metrics = ["accuracy", "auroc"]
seeds = [0]
bootstrap = {{ resamples = 50 }}
generators = [{{ name = "realnvp", epochs = 1, hidden = 8 }}]
active = {active}
"""
GOOD = (
    '{ rounds = 2, budget = 10, pool = 60, strategies = ["random", "margin", '
    '{ name = "boundary-path", max_steps = 10 }], oracle = [{ name = "ensemble-oracle", members = 1 }, "source-label"] }'
)


def parsed(tiny_registry, active: str):
    from probebench.registry import Registry

    config = load_config(tiny_registry(ACTIVE_SUITE.format(active=active)))
    return parse_suite(config, "tiny-active", Registry(config.builtin))


def test_the_active_table_is_parsed_with_defaults(tiny_registry):
    suite = parsed(tiny_registry, '{ rounds = 3, budget = 5, pool = 40, strategies = ["random", "entropy"] }')
    active = suite.active
    assert (active.rounds, active.budget, active.pool, active.warm_start) == (3, 5, 40, False)
    assert [s.name for s in active.strategies] == ["random", "entropy"]
    assert [o.name for o in active.oracles] == ["ensemble-oracle"]


@pytest.mark.parametrize(
    "active, message",
    [
        ('{ rounds = 2, budget = 5, pool = 40, strategies = ["random"], rouds = 3 }', "unknown key 'rouds'"),
        ('{ budget = 5, pool = 40, strategies = ["random"] }', "missing key 'rounds'"),
        ('{ rounds = 0, budget = 5, pool = 40, strategies = ["random"] }', "'rounds' must be >= 1"),
        ('{ rounds = 2, budget = 30, pool = 40, strategies = ["random"] }', "more than the pool of 40"),
        ('{ rounds = 2, budget = 5, pool = 40, strategies = ["randon"] }', "did you mean 'random'"),
        ("{ rounds = 2, budget = 5, pool = 40, strategies = [] }", "'strategies' is empty"),
        ('{ rounds = 2, budget = 5, pool = 40, strategies = ["random", "random"] }', "appears twice"),
        ('{ rounds = 2, budget = 5, pool = 40, strategies = ["random"], oracle = "pool-label" }', "cannot label"),
        ('{ rounds = 2, budget = 5, pool = 40, strategies = [{ name = "bald", T = 1 }] }', "T must be at least 2"),
        ('{ rounds = "2", budget = 5, pool = 40, strategies = ["random"] }', "'rounds' must be a int"),
    ],
)
def test_a_bad_active_table_is_one_line_naming_the_key(tiny_registry, active, message):
    with pytest.raises(UserError) as error:
        parsed(tiny_registry, active)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_pool_is_held_out_of_training_and_changes_the_classifier_key(tiny_registry):
    from probebench.pipeline.data import load_splits
    from probebench.pipeline.train import classifier_key
    from probebench.registry import Registry

    config = load_config(tiny_registry())
    registry = Registry(config.builtin)
    suite = parse_suite(config, "tiny", registry)
    plain = load_splits(registry, suite.dataset, None, validation=20)
    pooled = load_splits(registry, suite.dataset, None, validation=20, pool=50)
    assert pooled.pool == 50 and len(pooled.train_labels) == len(plain.train_labels) - 50
    assert torch.equal(pooled.val_images, plain.val_images)  # adding a pool keeps the validation draw
    rows = {tuple(x.flatten().tolist()) for x in pooled.train_images}
    assert not any(tuple(x.flatten().tolist()) in rows for x in pooled.pool_images)
    keys = [
        classifier_key(registry, suite.dataset, suite.classifier, 0, None, 20, data=s.fingerprint, pool=s.pool)
        for s in (plain, pooled)
    ]
    assert keys[0] != keys[1]
    with pytest.raises(UserError, match="active pool = 400"):
        load_splits(registry, suite.dataset, None, validation=20, pool=400)


def builtin_registry():
    return registry_with()  # the built-ins of registry.toml


def test_uncertainty_acquirers_pick_the_least_confident_pool_images():
    ctx = tiny_context()
    pool, _ = tiny_images(ctx, n=40)
    registry = builtin_registry()
    ctx = dataclasses.replace(ctx, registry=registry)
    probs = ctx.forward(pool)[0].softmax(dim=1).numpy()
    top2 = np.sort(probs, axis=1)[:, ::-1][:, :2]
    expected = {
        "msp": top2[:, 0],
        "margin": top2[:, 0] - top2[:, 1],
        "entropy": (probs * np.log(probs)).sum(axis=1),  # minus the entropy: low = uncertain
    }
    for name, confidence in expected.items():
        picked = registry.create("acquirer", name).acquire(ctx, pool, 5, torch.Generator().manual_seed(0))
        assert not picked.generated.any() and torch.equal(picked.images, pool[picked.source])
        assert set(picked.source.tolist()) == set(np.argsort(confidence, kind="stable")[:5].tolist()), name


def test_random_acquisition_is_seeded_and_distinct():
    ctx = tiny_context()
    pool, _ = tiny_images(ctx, n=40)
    acquirer = builtin_registry().create("acquirer", "random")
    first = acquirer.acquire(ctx, pool, 10, torch.Generator().manual_seed(3)).source
    again = acquirer.acquire(ctx, pool, 10, torch.Generator().manual_seed(3)).source
    assert torch.equal(first, again) and len(set(first.tolist())) == 10


def test_k_center_greedy_equals_a_brute_force_greedy():
    from probebench.plugins.acquirers._features import k_center_greedy

    rng = np.random.default_rng(0)
    pool, labelled = rng.normal(size=(30, 4)), rng.normal(size=(8, 4))
    chosen, centres = [], list(labelled)
    for _ in range(5):  # the definition: farthest pool point from its nearest centre, one at a time
        far = max(range(30), key=lambda i: min(np.linalg.norm(pool[i] - c) for c in centres))
        chosen.append(far)
        centres.append(pool[far])
    got = k_center_greedy(torch.tensor(pool, dtype=torch.float32), torch.tensor(labelled, dtype=torch.float32), 5)
    assert got.tolist() == chosen


def test_boundary_pairs_lie_on_either_side_of_the_decision_boundary():
    """In pixel space (the identity as the flow): 'before' keeps the original
    prediction, 'after' has another, and they end close together."""
    from probebench.plugins.acquirers._boundary import crossing_pairs
    from probebench.plugins.correctors._engine import Identity

    ctx = tiny_context()
    pool, _ = tiny_images(ctx, n=20)
    before, after, crossed, _steps = crossing_pairs(ctx, Identity(), pool, eta=0.2, max_steps=50, refine=4)
    with torch.no_grad():
        original, left, right = (ctx.classifier(x).argmax(dim=1) for x in (pool, before, after))
    assert crossed.sum() >= 15
    assert torch.equal(left, original)
    assert (right != original)[crossed].all()
    assert ((after - before).flatten(1).norm(dim=1)[crossed] <= 0.2 / 16 + 1e-4).all()


def test_oracles_label_as_documented():
    ctx = tiny_context()
    images, labels = tiny_images(ctx, n=30)
    registry = builtin_registry()
    for name in ("pool-label", "source-label"):
        assert torch.equal(registry.create("oracle", name).label(ctx, images, labels), labels)
    ensemble = registry.create("oracle", "ensemble-oracle", {"members": 2})
    ensemble.prepare(ctx)
    members = [ctx.train_classifier(10_000 + i) for i in range(2)]  # the documented seeds
    with torch.no_grad():
        mean = sum(member(images).softmax(dim=1) for member in members)
    assert torch.equal(ensemble.label(ctx, images, labels), mean.argmax(dim=1))


def test_two_rounds_end_to_end_write_rows_per_round_strategy_and_oracle(runner, tiny_registry, tmp_path):
    registry = tiny_registry(ACTIVE_SUITE.format(active=GOOD))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "tiny-active", "--registry", str(registry), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "active.csv")
    accuracy = table[table.metric == "accuracy"]
    runs = set(zip(accuracy.strategy, accuracy.oracle, strict=True))
    assert runs == {
        ("random", "pool-label"),
        ("margin", "pool-label"),
        ("boundary-path", "ensemble-oracle"),
        ("boundary-path", "source-label"),
    }
    for _run, rows in accuracy.groupby(["strategy", "oracle"]):
        assert rows["round"].tolist() == [0, 1, 2]
        assert np.diff(rows["labels"]).tolist() == [10, 10]  # the budget, each round
    first = accuracy[accuracy["round"] == 0]["value"]
    assert first.nunique() == 1  # every strategy starts from the suite's classifier
    # the gain over random is paired with random's accuracy at the same round
    gains = table[table.metric == "gain-over-random"]
    margin = accuracy[accuracy.strategy == "margin"].set_index("round")["value"]
    random = accuracy[accuracy.strategy == "random"].set_index("round")["value"]
    for _, row in gains[gains.strategy == "margin"].iterrows():
        assert row["value"] == pytest.approx(margin[row["round"]] - random[row["round"]], abs=1e-5)
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    # from the per-sample scores, the pooled gain of one seed is the stored row, interval included
    from probebench.report.active import load_hits, pooled_gains

    pooled = pooled_gains(load_hits([out]), resamples=50).set_index(["strategy", "oracle", "round"])
    stored = gains.set_index(["strategy", "oracle", "round"]).loc[pooled.index]
    for column in ("value", "ci_low", "ci_high"):
        assert np.allclose(pooled[column], stored[column], atol=1e-6), column
    # the source-label oracle never disagrees with the source; the rows say which oracle labelled
    disagree = table[table.metric == "oracle-source-disagreement"]
    assert set(disagree.oracle) <= {"ensemble-oracle", "source-label"}
    assert (disagree[disagree.oracle == "source-label"]["value"] == 0).all()
    head = json.loads((out / "run.json").read_text())
    oracles = head["active"]["oracles"]["0"]
    assert 0 < oracles["ensemble-oracle"]["test_accuracy"] < 1  # a trained model, not the test labels
    assert oracles["pool-label"]["test_accuracy"] == 1
    # every number traces to per-sample scores: accuracy is the mean of the saved hits
    scores = pd.read_csv(out / "active_scores.csv.gz")
    for (strategy, oracle, round_), frame in scores.groupby(["strategy", "oracle", "round"]):
        shown = accuracy[(accuracy.strategy == strategy) & (accuracy.oracle == oracle) & (accuracy["round"] == round_)]
        assert shown["value"].iloc[0] == pytest.approx(frame["hit"].mean(), abs=1e-5)
    acquired = torch.load(out / "active" / "margin_pool-label_seed0_round0.pt", weights_only=True)
    assert len(acquired["labels"]) == 10 and torch.equal(acquired["labels"], acquired["source_labels"])
    # results.csv and its readers are unchanged by the active rows
    assert runner.invoke(app, ["leaderboard", str(out)]).exit_code == 0


def test_badge_gradient_embedding_is_the_last_layer_gradient_at_the_predicted_label():
    from probebench.plugins.acquirers._features import gradient_scale

    torch.manual_seed(0)
    layer, features = torch.nn.Linear(6, 4), torch.randn(9, 6)
    expected = []
    for x in features:  # autograd, one image at a time
        layer.zero_grad()
        out = layer(x.unsqueeze(0))
        torch.nn.functional.cross_entropy(out, out.argmax(dim=1)).backward()
        expected.append(-layer.weight.grad.flatten())
    embedding = gradient_scale(layer(features).detach()).unsqueeze(2) * features.unsqueeze(1)
    assert torch.allclose(embedding.flatten(1), torch.stack(expected), atol=1e-6)


def test_badge_seeds_equal_k_means_pp_on_the_materialised_embeddings():
    from probebench.plugins.acquirers._features import badge_seeds, gradient_scale, kmeans_pp_seeds

    torch.manual_seed(1)
    features, logits = torch.randn(300, 16), 3 * torch.randn(300, 5)
    full = (gradient_scale(logits).unsqueeze(2) * features.unsqueeze(1)).flatten(1).double()
    for seed in range(3):
        factored = badge_seeds(features, logits, 20, torch.Generator().manual_seed(seed))
        plain = kmeans_pp_seeds((full * full).sum(1), lambda i: full @ full[i], 20, torch.Generator().manual_seed(seed))
        assert torch.equal(factored, plain) and factored[0] == int((full * full).sum(1).argmax())


def toy_boundary_pool():
    """A linear 2-class toy whose boundary is x0 = 0: four tight clusters of
    uncertain points on it (x0 ~ 0.3, the first at x0 ~ 0.01: the least certain)
    in four directions of (x1, x2), and 200 confident points far from it."""
    gen = torch.Generator().manual_seed(0)
    centres = [(0.01, 5, 0), (0.3, -5, 0), (0.3, 0, 5), (0.3, 0, -5)]
    clusters = [torch.tensor(c) + 0.005 * torch.randn(25, 3, generator=gen) for c in centres]
    confident = torch.cat([torch.full((200, 1), 30.0), 5 * torch.randn(200, 2, generator=gen)], dim=1)
    confident[::2, 0] = -30.0
    points = torch.cat([*clusters, confident])
    group = torch.cat([torch.full((25,), i) for i in range(4)] + [torch.full((200,), -1)])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
        model[1].bias.zero_()
    return points.reshape(-1, 1, 1, 3), group, model


def test_badge_picks_diverse_uncertain_points_and_is_seeded():
    pool, group, model = toy_boundary_pool()
    registry = builtin_registry()
    ctx = dataclasses.replace(tiny_context(classifier=model), registry=registry)
    badge, margin = registry.create("acquirer", "badge"), registry.create("acquirer", "margin")
    assert set(group[margin.acquire(ctx, pool, 4, torch.Generator()).source].tolist()) == {0}  # one cluster
    picks = []
    for seed in range(10):
        got = badge.acquire(ctx, pool, 4, torch.Generator().manual_seed(seed))
        assert not got.generated.any() and torch.equal(got.images, pool[got.source])
        assert len(set(got.source.tolist())) == 4
        groups = group[got.source]
        # confident points' embeddings collapse to the origin: at most one of them; every cluster at most once
        # so at least three of the four picks are uncertain (random: 100 of 300), each from another cluster
        assert (groups == -1).sum() <= 1 and len(set(groups[groups >= 0].tolist())) == int((groups >= 0).sum()) >= 3
        assert torch.equal(got.source, badge.acquire(ctx, pool, 4, torch.Generator().manual_seed(seed)).source)
        picks.append(tuple(got.source.tolist()))
    assert len(set(picks)) > 1  # the generator drives the sampling


def test_warm_start_retrains_from_the_previous_round_and_is_cached_apart(runner, tiny_registry, tmp_path):
    """`warm_start = true` gives other round models than the default (from
    scratch); both stay in the cache side by side, and a rerun trains nothing."""
    cache = Path(os.environ["PROBEBENCH_CACHE"])
    table = '{{ rounds = 1, budget = 10, pool = 60, strategies = ["random"], oracle = "source-label"{warm} }}'

    def run(warm: str, name: str) -> tuple[pd.Series, set[str]]:
        suite = ACTIVE_SUITE.format(active=table.format(warm=warm))
        suite = "\n".join(line for line in suite.splitlines() if not line.startswith("generators"))  # no flow
        args = ["run", "tiny-active", "--registry", str(tiny_registry(suite)), "--out", str(tmp_path / name)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        scores = pd.read_csv(tmp_path / name / "active_scores.csv.gz")
        return scores.set_index(["round", "index"])["msp"], {
            p.name for p in (cache / "classifier").glob("*.pt")
        }  # the session cache

    scratch, after_scratch = run("", "scratch")
    warm, after_warm = run(", warm_start = true", "warm")
    assert len(after_warm - after_scratch) == 1  # the warm round: a new cache entry beside scratch's
    for round_ in (0, 1):  # round 0 is the suite's classifier for both; then the models differ
        assert np.array_equal(scratch.loc[round_].to_numpy(), warm.loc[round_].to_numpy()) == (round_ == 0)
    again, after_again = run(", warm_start = true", "warm-again")
    assert after_again == after_warm and again.equals(warm)  # cached: nothing retrained, the same scores


def test_pooled_gains_equal_a_loop_over_seed_and_image_resamples():
    from probebench.evaluate import bootstrap_indices, percentile_interval
    from probebench.report.active import pooled_gains
    from probebench.significance import seed_draws

    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        for strategy, oracle, p in (("random", "pool-label", 0.8), ("margin", "pool-label", 0.9), ("bp", "ens", 0.7)):
            for round_ in (0, 1):
                hit = rng.random(40) < (0.75 if round_ == 0 else p)
                rows += [
                    {
                        "seed": seed,
                        "index": i,
                        "hit": h,
                        "round": round_,
                        "labels": 10 + round_,
                        "strategy": strategy,
                        "oracle": oracle,
                    }
                    for i, h in enumerate(hit)
                ]
    hits = pd.DataFrame(rows)
    got = pooled_gains(hits, resamples=200).set_index("strategy")
    assert set(got.index) == {"margin", "bp"} and (got["round"] == 1).all()
    draws = seed_draws(3, 200, 0)
    for strategy in ("margin", "bp"):
        gains = []
        for seed in (0, 1, 2):

            def hit(name, seed=seed):
                part = hits[(hits.seed == seed) & (hits.strategy == name) & (hits["round"] == 1)]
                return part.sort_values("index")["hit"].to_numpy(dtype=float)

            gains.append(hit(strategy) - hit("random"))
        indices = [bootstrap_indices(40, 200, seed) for seed in (0, 1, 2)]  # each seed's image resamples
        replicates = [np.mean([gains[s][indices[s][b]].mean() for s in draws[b]]) for b in range(200)]
        low, high = percentile_interval(np.array(replicates), 0.95)
        row = got.loc[strategy]
        assert row["value"] == pytest.approx(np.mean([g.mean() for g in gains]))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        assert row["seeds"] == 3


def test_lines_in_two_worker_processes_give_the_bytes_of_one_process(runner, tiny_registry, tmp_path, monkeypatch):
    """PROBEBENCH_WORKERS=2 runs the strategies' loops side by side in worker
    processes (the oracles first, the generating lines after them); the rows,
    per-sample scores and acquired images are those of one process running them in turn."""
    registry = tiny_registry(ACTIVE_SUITE.format(active=GOOD))

    def run(workers: str, name: str) -> str:
        monkeypatch.setenv("PROBEBENCH_WORKERS", workers)
        args = ["run", "tiny-active", "--registry", str(registry), "--out", str(tmp_path / name)]
        result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / f"cache-{name}"), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        return result.output

    assert "processes" not in run("1", "one")
    assert "active learning seed 0 in 2 processes" in run("2", "two")
    for name in ("active.csv", "active_scores.csv.gz"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    acquired = sorted(p.name for p in (tmp_path / "one" / "active").glob("*.pt"))
    assert acquired == sorted(p.name for p in (tmp_path / "two" / "active").glob("*.pt")) and acquired
    for name in acquired:
        one, two = (torch.load(tmp_path / run / "active" / name, weights_only=True) for run in ("one", "two"))
        assert all(torch.equal(one[key], two[key]) for key in one), name
    seconds = json.loads((tmp_path / "two" / "run.json").read_text())["active"]["seconds"]["0"]
    assert set(seconds) == {
        "random (pool-label)",
        "margin (pool-label)",
        "boundary-path (ensemble-oracle)",
        "boundary-path (source-label)",
    }
    assert all(set(phases) == {"evaluate", "acquire", "retrain"} for phases in seconds.values())


def test_a_bad_worker_count_is_one_line(runner, tiny_registry, monkeypatch):
    monkeypatch.setenv("PROBEBENCH_WORKERS", "two")
    result = runner.invoke(app, ["run", "tiny", "--registry", str(tiny_registry())])
    assert result.exit_code != 0 and "PROBEBENCH_WORKERS must be a whole number >= 1, got 'two'" in result.output
