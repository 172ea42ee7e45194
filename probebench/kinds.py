"""The Protocol of each component kind.

Every component is a class with a kebab-case class attribute ``name``, unique
within its kind. The keyword arguments of its constructor are its options:
suites pass them through, and ``probebench show`` lists them (with help taken
from an optional ``option_help`` dict). An optional class attribute ``version``
(default ``"1"``) is part of every cache key the component's output enters:
bump it when a change alters results. No component hard-codes a device.

Shapes and ranges: images are float32 ``[N, C, H, W]`` in [0, 1]; labels are
int64 ``[N]``; a score is float ``[N]`` where **higher means more confident the
classifier's prediction is right** (uncertainty methods negate their measure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch stays out of CLI start-up
    from pathlib import Path

    import torch

    from probebench.pipeline.context import Batch, Context


@runtime_checkable
class Dataset(Protocol):
    name: ClassVar[str]
    num_classes: int
    shape: tuple[int, int, int]

    def load(self, split: str, root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images float32 [N,C,H,W] in [0,1] and labels int64 [N] for ``split``
        ("train" or "test"). Reads local files under ``root`` only; raises
        ``probebench.errors.UserError`` saying where to get them when missing.

        A dataset that ships pre-corrupted test sets (CIFAR-10-C, CURE-TSR) may
        also define ``cells(root) -> list[(corruption, severity)]``, called with
        ``load`` before any training (so missing files fail at once), and
        ``load_cell(corruption, severity, root) -> (images, labels)``, called
        once per listed cell; each becomes a results row group like a suite's
        corruption at that severity.

        An optional attribute ``classes`` (the ``num_classes`` class names,
        may be set by ``load``, as ``num_classes`` and ``shape`` may for data
        whose classes are only known from the files) is recorded in run.json
        (``data.classes``) and names the classes in reports and grids."""


@runtime_checkable
class Corruption(Protocol):
    name: ClassVar[str]

    def __call__(self, images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
        """Corrupted copy of ``images`` at ``severity`` 1..5 (same shape, in [0,1])."""


@runtime_checkable
class Classifier(Protocol):
    name: ClassVar[str]

    def build(self, num_classes: int, shape: tuple[int, int, int]) -> torch.nn.Module:
        """An untrained model mapping [N,C,H,W] images to [N,num_classes] logits."""


@runtime_checkable
class WeightsFiles(Protocol):
    """A capability a classifier may declare: its weights come from files.

    The class attribute ``loads_weights = True`` declares it, and
    ``weights_files()`` returns the files ``build`` reads (a checkpoint, a
    pretrained ``.safetensors``); their SHA-256 enters the trained classifier's
    cache key, so a changed file is never served from the cache. The
    attribute ``trains`` (default True) says whether the train stage then
    trains the built model (fine-tuning) or uses it as built (``False``: it
    is neither trained nor cached, and scorers that train more models of the
    suite's classifier, such as ensembles or cross-fitted probers, fail with
    a one-line error). The built-in ``checkpoint`` classifier declares it.
    """

    loads_weights: ClassVar[bool]

    def weights_files(self) -> list[Any]:
        """The paths (str or Path) of the files ``build`` loads weights from."""


def weights_files(classifier: object) -> list[Any]:
    """The files a classifier declares it loads weights from (``WeightsFiles``), else []."""
    if getattr(classifier, "loads_weights", False) is not True:
        return []
    return list(classifier.weights_files())  # type: ignore[attr-defined]


def trains(classifier: object) -> bool:
    """Whether the train stage trains a classifier's built model (``WeightsFiles.trains``)."""
    return getattr(classifier, "trains", True) is not False


@runtime_checkable
class SelfTraining(Protocol):
    """A capability a classifier may declare: it trains itself.

    The class attribute ``trains_itself = True`` declares it; the train stage
    then calls the component's ``fit`` instead of its own cross-entropy loop
    (a GAN, for one, needs two optimisers), caches the weights and the
    returned loss curves like any classifier's, and calls ``save_figures``
    with the run folder whenever a run uses the model.
    """

    trains_itself: ClassVar[bool]

    def fit(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        seed: int,
        device: torch.device | str,
        label: str,
    ) -> dict[str, list[float]]:
        """Train ``model`` (built by ``build``) on the training split, deterministic
        given ``seed``, leaving it in eval mode; return loss curves by name
        (one value per epoch), which are cached with the weights."""

    def save_figures(
        self,
        model: torch.nn.Module,
        history: dict[str, list[float]],
        images: torch.Tensor,
        labels: torch.Tensor,
        out: Path,
        stem: str,
    ) -> None:
        """Write PNGs named ``<stem>-*.png`` into the run folder ``out`` (they
        join the report's grids), from the trained ``model``, its ``history``
        and test ``images``/``labels``."""


def trains_itself(classifier: object) -> bool:
    """Whether a classifier class (or instance) declares the ``SelfTraining`` capability."""
    return getattr(classifier, "trains_itself", False) is True


def uses_generator(corrector: object) -> bool:
    """Whether a corrector class (or instance) edits through one of the suite's
    generators (the default) rather than in pixel space (``uses_generator = False``)."""
    return getattr(corrector, "uses_generator", True) is not False


@runtime_checkable
class Generator(Protocol):
    name: ClassVar[str]

    def build(self, shape: tuple[int, int, int]) -> Any:
        """An invertible flow (an nn.Module) with ``encode(x) -> z``,
        ``decode(z) -> x`` and ``log_prob(x) -> [N]``; the generator stage
        (probebench/pipeline/generate.py) trains it on ``bits_per_dim(x,
        generator) -> [N]`` and may read ``epochs``, ``lr``, ``batch_size``,
        ``warmup`` from the component. An unsupported shape is a UserError."""


@runtime_checkable
class Prober(Protocol):
    name: ClassVar[str]

    def fit(self, features: torch.Tensor, hit: torch.Tensor) -> None:
        """Learn P(hit) from features [N,D] and boolean outcomes [N]."""

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """P(hit) in [0,1], shape [N]. Uses no label.

        A prober may also define ``log_odds(features) -> float[N]``, the
        logit of its P(hit); the ``prober`` scorer then ranks by it, so
        a P(hit) that rounds to exactly 1.0 cannot tie scores (``confidnet``
        does: its regression toward true-class probabilities near 1
        saturates the sigmoid)."""


@runtime_checkable
class TrueClassTarget(Protocol):
    """A capability a prober may declare: it learns from the true-class probability.

    The class attribute ``fits_true_class_probability = True`` declares it;
    the ``prober`` scorer then calls ``fit(features, hit, tcp)`` with ``tcp``
    float [N] in [0, 1], the softmax probability that the model whose outcome
    gave ``hit`` (the classifier itself, or a cross-fitted fold model) assigns
    the true class. ``predict`` is unchanged: a confidence in [0, 1]. The
    built-in ``confidnet`` prober declares it.
    """

    fits_true_class_probability: ClassVar[bool]

    def fit(self, features: torch.Tensor, hit: torch.Tensor, tcp: torch.Tensor) -> None:
        """Learn a confidence from features [N,D], boolean outcomes [N] and their TCP [N]."""


def fits_true_class_probability(prober: object) -> bool:
    """Whether a prober class (or instance) declares the ``TrueClassTarget`` capability."""
    return getattr(prober, "fits_true_class_probability", False) is True


@runtime_checkable
class Scorer(Protocol):
    name: ClassVar[str]

    def score(self, ctx: Context, batch: Batch) -> torch.Tensor:
        """Confidence [N] that each prediction is right (higher = more confident).
        May define ``prepare(ctx)``, called once per trained classifier."""


@runtime_checkable
class Guide(Protocol):
    """A capability a scorer may declare: it can guide correctors.

    The class attribute ``guides_correctors = True`` declares it (the suite
    and the correction stage read the class, not the name), and after
    ``prepare(ctx)`` the scorer maps images to P(hit) with ``p_hit``. A
    corrector needs a scorer with this capability in its suite; which one
    guides it is the corrector's ``prober`` option (a scorer label), else the
    first such scorer of the suite. The built-in ``prober`` scorer declares it.
    """

    guides_correctors: ClassVar[bool]

    def p_hit(self, images: torch.Tensor) -> torch.Tensor:
        """P(hit) float [N] in [0, 1] of images [N,C,H,W] in [0, 1] on
        ``ctx.device``, differentiable with respect to the images, computed
        through the classifier of the ``ctx`` it was prepared with, using no
        label and no other sample of the batch."""


def can_guide(scorer: object) -> bool:
    """Whether a scorer class (or instance) declares the ``Guide`` capability."""
    return getattr(scorer, "guides_correctors", False) is True


@runtime_checkable
class ClassifierRequests(Protocol):
    """A capability a scorer may declare: it names, before ``prepare``, the
    other classifiers its ``prepare`` trains through ``ctx.train_classifier``
    (ensemble members, cross-fitted fold models), so that the run trains them
    beforehand, concurrently with each other, the evaluated classifier and the
    flows (one torch thread each; ``probebench/executors/local.py``).

    The class attribute ``requests_classifiers = True`` declares it. A
    request its ``prepare`` never makes costs one needless training; a call
    it did not request is trained by ``prepare`` as before: the results are
    the same either way, only the time differs.
    """

    requests_classifiers: ClassVar[bool]

    def classifier_requests(self, seed: int, train_size: int) -> list[dict[str, Any]]:
        """The keyword arguments of each ``ctx.train_classifier`` call that
        ``prepare`` makes for the run seed ``seed`` on a training split of
        ``train_size`` images: ``seed`` and, optionally, ``subset`` (int64
        indices into the training split) and ``options``."""


def requests_classifiers(scorer: object) -> bool:
    """Whether a scorer class (or instance) declares the ``ClassifierRequests`` capability."""
    return getattr(scorer, "requests_classifiers", False) is True


@dataclass
class Correction:
    """What a corrector returns: edited images [N,C,H,W] in [0,1] and the
    optimisation steps each sample took (0 where it was left alone: such a
    sample is returned unchanged). ``details`` holds optional per-sample
    tensors (first dimension N) worth keeping, e.g. ``path`` [N,T,C,H,W] of a
    trajectory; the correction stage saves them with the edited images.

    ``predictions`` (int [N], optional) is for a method that changes the
    classifier's predictions rather than (or besides) the images, e.g.
    test-time augmentation or adaptation: the stage judges these classes
    instead of re-classifying ``images``, with the same metrics."""

    images: torch.Tensor
    steps: torch.Tensor
    details: dict[str, Any] = field(default_factory=dict)
    predictions: torch.Tensor | None = None


@runtime_checkable
class Corrector(Protocol):
    name: ClassVar[str]

    def correct(self, ctx: Context, images: torch.Tensor) -> Correction:
        """Edit ``images`` without labels so that misses may become hits."""


@runtime_checkable
class Metric(Protocol):
    name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def __call__(self, confidence: Any, hit: Any) -> Any:
        """The metric of numpy ``confidence`` and boolean ``hit`` along the
        last axis: float for 1-d inputs, an array for [B, N] (bootstrap).

        Must not depend on the order of the samples: the bootstrap hands
        over resamples sorted by confidence (read-only arrays). Optional class
        attributes: ``needs_confidence = False`` (describes the classifier
        alone, like accuracy), ``scale`` (the factor the value is already
        multiplied by, e.g. 1000 for AURC; tables and ``compare`` tolerances
        use it). ``needs_probabilities = True`` (a classifier-level metric
        that is the mean of a per-sample loss of the class probabilities, like
        NLL or Brier): it then defines ``per_sample(probabilities float[N, C],
        labels int[N]) -> float[N]``, the evaluator takes the mean as its value
        and the same resamples for its interval, and its rows have method ``-``."""


@dataclass
class FinishedRun:
    """What a logger receives: a finished run, read back from its folder.

    ``path`` is the run folder; ``params`` the flat parameters (the resolved
    suite as dotted keys, ``seeds``, the probebench, torch and python
    versions, git commit, device); ``rows`` the tidy rows of results.csv
    (dicts with ``dataset``, ``corruption``, ``severity``, ``classifier``,
    ``seed``, ``method``, ``metric``, ``value``, ``ci_low``, ``ci_high``,
    ``n``; a seed of -1 never occurs: rows are per seed); ``meta`` is run.json
    as a dict; ``artifacts`` the files worth keeping (results.csv, run.json,
    scores.csv.gz, replicates.npz, report.html and every PNG under the folder)."""

    path: Any
    params: dict[str, Any]
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    artifacts: list[Any]


@runtime_checkable
class Logger(Protocol):
    name: ClassVar[str]

    def log_run(self, run: FinishedRun) -> None:
        """Send a finished run somewhere (an experiment tracker); called once
        per run, after its folder is complete. Imports its tracker lazily."""


@dataclass
class Acquisition:
    """What an acquirer returns: ``images`` [K,C,H,W] in [0,1] to be labelled,
    ``source`` int64 [K], the index into the pool it was handed of the image
    each one is (or was made from), and ``generated`` bool [K], True where the
    image is not a pool image itself (an edit or a point on a path). ``details``
    holds optional per-image tensors (first dimension K) worth keeping."""

    images: torch.Tensor
    source: torch.Tensor
    generated: torch.Tensor
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Acquirer(Protocol):
    name: ClassVar[str]

    def acquire(self, ctx: Context, pool: torch.Tensor, k: int, generator: torch.Generator) -> Acquisition:
        """Pick or make ``k`` images to label from the unlabelled ``pool``
        [P,C,H,W] (images acquired in earlier rounds are no longer in it),
        using ``ctx.classifier`` (this round's model), ``ctx.train_images``
        (what it was trained on) and, for a generating acquirer, the flow
        ``ctx.generator``; ``generator`` seeds any randomness. Sees no label.
        A class attribute ``generates = True`` says it may return generated
        images (they go to the suite's ``active.oracle``)."""


@runtime_checkable
class Oracle(Protocol):
    name: ClassVar[str]

    def label(self, ctx: Context, images: torch.Tensor, source_labels: torch.Tensor) -> torch.Tensor:
        """Labels int64 [K] of acquired ``images`` [K,C,H,W]; ``source_labels``
        are the true labels of the pool images they are or were made from. May
        define ``prepare(ctx)``, called once per seed with ``ctx.train_images``
        and ``ctx.train_labels`` = every labelled training image including the
        pool, and ``ctx.train_classifier(seed)`` training on those. A class
        attribute ``labels_generated = True`` says it can label generated images."""


@runtime_checkable
class Attack(Protocol):
    name: ClassVar[str]

    def __call__(
        self,
        model: torch.nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        severity: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """An adversarial copy of ``images`` (same shape, in [0, 1]) at
        ``severity`` 1..5 against ``model``'s logits (the suite's classifier,
        in eval mode, on the run's device). ``labels`` only guide the attack
        (as in every robustness benchmark); the harness scores the result
        like any test cell. Deterministic given the ``torch.Generator``."""


KINDS: dict[str, type] = {
    "dataset": Dataset,
    "corruption": Corruption,
    "classifier": Classifier,
    "generator": Generator,
    "prober": Prober,
    "scorer": Scorer,
    "corrector": Corrector,
    "metric": Metric,
    "logger": Logger,
    "acquirer": Acquirer,
    "oracle": Oracle,
    "attack": Attack,
}

# Capabilities a component of a kind may declare: Protocol -> (kind, the class
# attribute that declares it). docs/plugins.md documents each in its kind's section.
CAPABILITIES: dict[type, tuple[str, str]] = {
    Guide: ("scorer", "guides_correctors"),
    WeightsFiles: ("classifier", "loads_weights"),
    ClassifierRequests: ("scorer", "requests_classifiers"),
    TrueClassTarget: ("prober", "fits_true_class_probability"),
    SelfTraining: ("classifier", "trains_itself"),
}

# What a class must define for its kind; checked when a plugin registers it.
REQUIRED: dict[str, tuple[str, ...]] = {
    "dataset": ("name", "load"),
    "corruption": ("name", "__call__"),
    "classifier": ("name", "build"),
    "generator": ("name", "build"),
    "prober": ("name", "fit", "predict"),
    "scorer": ("name", "score"),
    "corrector": ("name", "correct"),
    "metric": ("name", "higher_is_better", "__call__"),
    "logger": ("name", "log_run"),
    "acquirer": ("name", "acquire"),
    "oracle": ("name", "label"),
    "attack": ("name", "__call__"),
}
