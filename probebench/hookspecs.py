"""The hooks of probebench: one ``register_<kind>s()`` per component kind.

Every hook is called once, when the plugin manager starts (``probebench.registry``),
on every registered plugin: the built-in modules named in ``registry.toml``
``[plugins] builtin`` and the modules of third-party distributions that declare
an entry point in the ``probebench`` group. Each returns a list of component
classes (not instances); the kind's Protocol in ``probebench.kinds`` says what a
class must provide. A plugin implements only the hooks it needs.

Plugin modules are imported whenever the CLI starts (``probebench ls`` too), so
they must stay cheap to import: import torch inside methods, not at the top.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("probebench")
hookimpl = pluggy.HookimplMarker("probebench")


@hookspec
def register_datasets() -> list[type]:
    """Return Dataset classes: ``load(split, root) -> (images, labels)``.

    Images are float32 ``[N, C, H, W]`` in [0, 1], labels int64 ``[N]``. A
    dataset that ships pre-corrupted test sets may add ``cells(root)`` and
    ``load_cell(corruption, severity, root)`` (see ``probebench.kinds.Dataset``).
    """


@hookspec
def register_corruptions() -> list[type]:
    """Return Corruption classes: ``__call__(images, severity, generator) -> images``.

    Pure and deterministic given the ``torch.Generator``; severity is 1..5.
    """


@hookspec
def register_classifiers() -> list[type]:
    """Return Classifier classes: ``build(num_classes, shape) -> torch.nn.Module``.

    Hidden layers must be addressable by module name (``model.get_submodule``).
    """


@hookspec
def register_generators() -> list[type]:
    """Return Generator classes: ``build(shape)`` returning an invertible flow
    with ``encode(x) -> z``, ``decode(z) -> x`` and ``log_prob(x)``.
    """


@hookspec
def register_probers() -> list[type]:
    """Return Prober classes: ``fit(features, hit)`` and ``predict(features) -> P(hit)``."""


@hookspec
def register_scorers() -> list[type]:
    """Return Scorer classes: ``score(ctx, batch) -> float[N]``.

    Higher means more confident that the classifier's prediction is right.
    """


@hookspec
def register_correctors() -> list[type]:
    """Return Corrector classes: ``correct(ctx, images) -> Correction``
    (edited images in [0, 1] and the steps each sample took).
    """


@hookspec
def register_metrics() -> list[type]:
    """Return Metric classes: ``__call__(confidence, hit) -> float`` with a
    ``higher_is_better`` class attribute.
    """


@hookspec
def register_loggers() -> list[type]:
    """Return Logger classes: ``log_run(run: FinishedRun) -> None``.

    Called at start-up; a suite's ``log`` list (or ``probebench run --log``)
    names the loggers that receive each finished run.
    """


@hookspec
def register_acquirers() -> list[type]:
    """Return Acquirer classes: ``acquire(ctx, pool, k, generator) -> Acquisition``
    (active learning: the ``k`` images of the unlabelled pool, or images made
    from them, to label next; see ``probebench.kinds.Acquirer``).
    """


@hookspec
def register_oracles() -> list[type]:
    """Return Oracle classes: ``label(ctx, images, source_labels) -> labels``
    (who labels acquired images in active learning; see ``probebench.kinds.Oracle``).
    """


@hookspec
def register_attacks() -> list[type]:
    """Return Attack classes: ``__call__(model, images, labels, severity, generator) -> images``.

    Adversarial test cells: a suite's ``attacks`` list names them with their
    ``severities``; each is crafted against the run's own classifier.
    """
