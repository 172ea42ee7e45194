"""Fit tasks: the models a seed trains, known before the run starts.

Per seed: the classifier, each flow, and the other classifiers its scorers
request (``probebench.kinds.ClassifierRequests``: ensemble members, fold
models). A fit task only puts its model into the artifact store (a flow's
with its quality and grids, ``generate.judged``); the ``train``,
``generators`` and ``prepare`` tasks then load it. So the fit
tasks depend on nothing and an executor may run them at once
(``probebench/executors/workers.py``).

A seed with two or more fit tasks on the CPU trains each of them on one torch
thread, whichever executor runs them and however many run at once: a
gradient summed over two threads differs in its last bits from one summed over
one, so a fixed thread count per task keeps a run's bytes independent of the
scheduling. A seed with a single one trains it on the run's thread count.

A fit task never raises (but for Ctrl-C): when training fails, the task that
loads the model trains it again and reports the failure where it always did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from probebench.suite import ComponentSpec

if TYPE_CHECKING:
    import torch

    from probebench.pipeline.graph import Task
    from probebench.pipeline.stage import Run

STAGE = "fit"


@dataclass(frozen=True)
class Fit:
    """One model of a seed: a ``classifier`` (on ``subset`` of the training
    split when given) or a ``generator``; ``spec`` is the component as the
    suite configures it (with a request's options merged in)."""

    kind: str
    spec: ComponentSpec
    seed: int
    subset: torch.Tensor | None = None

    @property
    def name(self) -> str:
        what = f"{self.kind}-{self.spec.label}-seed{self.seed}"
        if self.subset is not None:
            from probebench.pipeline.train import subset_digest

            what += f"-subset-{subset_digest(self.subset)[:8]}"
        return what

    def key(self, run: Run) -> str:
        from probebench.pipeline.generate import generator_key
        from probebench.pipeline.train import split_classifier_key

        splits = run.splits
        if self.kind == "classifier":
            return split_classifier_key(run.registry, run.suite.dataset, self.spec, splits, self.seed, self.subset)
        return generator_key(
            run.registry,
            run.suite.dataset,
            self.spec,
            self.seed,
            splits.validation,
            data=splits.fingerprint,
            pool=splits.pool,
        )


def fit_done(run: Run, *, fit: Fit) -> bool:
    """Whether ``fit``'s model is in the store already (a fit task's ``done``)."""
    return run.store.has(fit.kind, fit.key(run))


def fit_task(run: Run, *, fit: Fit, device: torch.device) -> None:
    """Train ``fit``'s model into the store unless it is there."""
    from probebench.pipeline.generate import judged, trained_generator
    from probebench.pipeline.train import trained_classifier

    if fit_done(run, fit=fit):
        return
    suite = run.suite
    try:
        if fit.kind == "classifier":
            trained_classifier(
                run.registry, run.store, suite.dataset, fit.spec, run.splits, fit.seed, device, fit.subset
            )
        else:
            flow = trained_generator(run.registry, run.store, suite.dataset, fit.spec, run.splits, fit.seed, device)[0]
            judged(run, fit.spec, fit.seed, flow, device)  # its quality and grids, while other models train
    except Exception:  # the task that loads the model trains it again and reports why it failed
        return


def seed_fits(run: Run, seed: int) -> list[Fit]:
    """The models of ``seed``: the classifier (when it trains), the flows,
    and the classifiers the scorers request, each once."""
    from probebench.kinds import requests_classifiers, trains

    suite, registry = run.suite, run.registry
    fits = [Fit("generator", spec, seed) for spec in suite.generators]
    try:
        if not trains(registry.create("classifier", suite.classifier.name, suite.classifier.options)):
            return fits
    except Exception:  # the train task reports it
        return fits
    fits.insert(0, Fit("classifier", suite.classifier, seed))
    seen = {_identity(seed, None, None)}
    for spec in suite.scorers:
        if not requests_classifiers(registry.get("scorer", spec.name)):
            continue
        try:
            requests = registry.create("scorer", spec.name, spec.options).classifier_requests(
                seed, len(run.splits.train_labels)
            )
        except Exception:  # its prepare reports it
            continue
        for request in requests:
            identity = _identity(request["seed"], request.get("subset"), request.get("options"))
            if identity not in seen:
                seen.add(identity)
                options = request.get("options") or {}
                classifier = replace(suite.classifier, options={**suite.classifier.options, **options})
                fits.append(Fit("classifier", classifier, int(request["seed"]), request.get("subset")))
    return fits


def fit_tasks(run: Run, seed: int, device: torch.device) -> list[Task]:
    """The fit tasks of ``seed`` (see the module's docstring for their threads)."""
    from probebench.pipeline.graph import Task

    fits = seed_fits(run, seed)
    threads = 1 if device.type == "cpu" and len(fits) >= 2 else None
    return [
        Task(
            f"{STAGE}/seed={seed}/{fit.name}",
            STAGE,
            (),
            partial(fit_task, fit=fit, device=device),
            threads=threads,
            done=partial(fit_done, fit=fit),
        )
        for fit in fits
    ]


def _identity(seed: int, subset: Any, options: dict | None) -> tuple[int, str, str]:
    from probebench.pipeline.train import subset_digest

    digest = "" if subset is None else subset_digest(subset)
    return int(seed), digest, json.dumps(options or {}, sort_keys=True, default=str)
