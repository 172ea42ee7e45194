"""ConfidNet: a prober that regresses the true-class probability (TCP) through
the ``TrueClassTarget`` capability, on the prober's features and training data."""

from __future__ import annotations

import pytest
import torch

from probebench.hookspecs import hookimpl
from probebench.kinds import CAPABILITIES, TrueClassTarget, fits_true_class_probability
from probebench.pipeline.context import Batch
from probebench.plugins.probers.confidnet import ConfidNet
from probebench.plugins.probers.mlp import MLP
from probebench.plugins.scorers.prober import ProberScorer
from probebench.testing import check_prober
from tests.test_prober import make_ctx, random_digits, tiny_cnn


def toy_tcp(n: int, seed: int):
    """Features whose first two coordinates set a TCP in (0, 1); hit = TCP above 1/2."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 6, generator=generator)
    tcp = torch.sigmoid(1.5 * features[:, 0] - features[:, 1] + 1.0)
    return features, tcp > 0.5, tcp


def test_confidnet_learns_the_true_class_probability_on_a_toy_problem():
    features, hit, tcp = toy_tcp(600, seed=0)
    torch.manual_seed(0)
    prober = ConfidNet(hidden=[32, 32], epochs=30, patience=0, lr=3e-3)
    prober.fit(features, hit, tcp)
    test_features, _, test_tcp = toy_tcp(400, seed=1)
    predicted = prober.predict(test_features)
    error = (predicted - test_tcp).abs().mean().item()
    assert error < 0.03, f"mean |predicted - TCP| = {error:.3f}"
    # the mlp prober, trained on hit alone, does not regress the TCP: its P(hit) is a class probability
    torch.manual_seed(0)
    mlp = MLP(hidden=[32, 32], epochs=30, patience=0, lr=3e-3)
    mlp.fit(features, hit)
    assert (mlp.predict(test_features) - test_tcp).abs().mean().item() > 2 * error
    assert prober.facts["loss"] == "mse-tcp" and prober.facts["imbalance"] == "none"
    check_prober(ConfidNet(hidden=[64, 64], lr=3e-3))  # the plugin author's check passes it a TCP


def test_confidnet_declares_the_capability_and_refuses_a_fit_without_tcp():
    assert fits_true_class_probability(ConfidNet) and not fits_true_class_probability(MLP)
    assert isinstance(ConfidNet(), TrueClassTarget) and CAPABILITIES[TrueClassTarget][0] == "prober"
    features, hit, tcp = toy_tcp(50, seed=0)
    with pytest.raises(ValueError, match="true-class probability"):
        ConfidNet().fit(features, hit)
    with pytest.raises(ValueError, match=r"tcp must be \[N\] in \[0, 1\]"):
        ConfidNet().fit(features, hit, tcp + 1)


class RecordingTCPProber(MLP):
    """A third-party prober that declares the capability and keeps what it was given."""

    name = "recording-tcp"
    fits_true_class_probability = True
    given: list = []

    def fit(self, features, hit, tcp):
        RecordingTCPProber.given.append((hit.clone(), tcp.clone()))
        self._fit_net(features, hit, tcp)


class RecordingPlugin:
    @hookimpl
    def register_probers(self):
        return [RecordingTCPProber]


@pytest.mark.parametrize("source", ["train", "crossfit"])
def test_the_prober_scorer_hands_the_tcp_of_the_models_whose_outcomes_give_hit(tmp_path, source):
    images, labels = random_digits(120)
    models = {}

    def train_fold(seed, subset=None, options=None):
        models[len(subset)] = models.get(len(subset), []) + [tiny_cnn(seed=10 + len(models))]
        return models[len(subset)][-1]

    classifier = tiny_cnn()
    ctx = make_ctx(tmp_path, classifier, images, labels, train_classifier=train_fold)
    ctx.registry.add_plugin(RecordingPlugin(), "recording")
    RecordingTCPProber.given.clear()
    scorer = ProberScorer(prober="recording-tcp", source=source, prober_options={"epochs": 1}, min_misses=3)
    scorer.prepare(ctx)
    ((hit, tcp),) = RecordingTCPProber.given
    if source == "train":
        with torch.no_grad():
            probabilities = classifier(images).softmax(dim=1)
        expected = probabilities[torch.arange(len(labels)), labels]
        assert torch.allclose(tcp, expected, atol=1e-6)
        assert torch.equal(hit, probabilities.argmax(dim=1) == labels)
    # a TCP above 1/2 is always a hit (the true class has the majority); a miss's TCP is below the top class's
    assert bool(hit[tcp > 0.5].all()) and tcp.shape == hit.shape == (120,)
    assert bool(((tcp >= 0) & (tcp <= 1)).all())


def saturating_tcp(n: int, seed: int):
    """A classifier judged on its own training images: 97% hits, most of them with a
    true-class probability of exactly 1.0 in float32, the rest ~0.9-1; misses low.
    Feature 0 carries how sure the classifier was."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 8, generator=generator)
    hit = torch.rand(n, generator=generator) < 0.97
    margin = 3.0 * features[:, 0] + 2.0
    tcp = torch.where(hit, torch.sigmoid(margin + 20.0).float(), 0.5 * torch.sigmoid(margin - 3.0))
    features[:, 0] = torch.where(hit, features[:, 0] + 1.5, features[:, 0] - 1.5)
    return features, hit, tcp


def test_confidnet_still_ranks_when_its_targets_saturate_the_sigmoid():
    """The collapse of version 1 (lr 1e-3, scored on P(hit)): with TCP ~1 for
    almost every sample, P(hit) became exactly 1.0 everywhere, every score tied
    and AUROC was 0.5. The prober scorer ranks ConfidNet by its log-odds."""
    from sklearn.metrics import roc_auc_score

    features, hit, tcp = saturating_tcp(2500, seed=0)
    assert (tcp[hit] == 1.0).float().mean() > 0.5  # the trap: most targets are exactly 1 in float32
    torch.manual_seed(0)
    prober = ConfidNet()  # the paper's net and lr (1e-3 sends every P(hit) to 1.0 here, AUROC 0.5)
    prober.fit(features, hit, tcp)
    test_features, test_hit, _ = saturating_tcp(1500, seed=1)
    confidence = prober.log_odds(test_features)
    p_hit = prober.predict(test_features)
    assert len(torch.unique(confidence)) == len(confidence)  # no ties ...
    assert len(torch.unique(p_hit)) < len(p_hit)  # ... where P(hit) rounds some to the same float32
    assert roc_auc_score(test_hit.numpy(), confidence.numpy()) > 0.9
    assert prober.facts["valid_auroc"] > 0.9
    assert bool((torch.sigmoid(confidence) - p_hit).abs().max() < 1e-5)  # the log-odds of the same P(hit)


def test_the_prober_scorer_ranks_confidnet_by_its_log_odds_and_guides_with_p_hit(tmp_path):
    images, labels = random_digits(120)
    ctx = make_ctx(tmp_path, tiny_cnn(), images, labels)
    scorer = ProberScorer(prober="confidnet", source="train", prober_options={"epochs": 1}, min_misses=3)
    scorer.prepare(ctx)
    batch = Batch(ctx, random_digits(30, seed=5)[0])
    score = scorer.score(ctx, batch)
    inputs = scorer.inputs(batch.logits, {"fc_layer.4": batch.features("fc_layer.4")})
    assert torch.equal(score, scorer.prober.log_odds(inputs))
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(score), scorer.p_hit(batch.images), atol=1e-6)
