"""ConfidNet: a prober that regresses the true-class probability (TCP) through
the ``TrueClassTarget`` capability, on the prober's features and training data."""

from __future__ import annotations

import pytest
import torch

from probebench.hookspecs import hookimpl
from probebench.kinds import CAPABILITIES, TrueClassTarget, fits_true_class_probability
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
