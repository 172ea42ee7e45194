"""``prober``: confidence = P(hit) from a prober that reads the classifier's
hidden features (Probing Network Decisions, ICPRAI 2024), with the choices of
training data this project measured (see README, "The prober")."""

from __future__ import annotations

from probebench.errors import ComponentFailure, UserError
from probebench.hookspecs import hookimpl
from probebench.kinds import fits_true_class_probability

SOURCES = ("train", "holdout", "crossfit", "reference-add-split")
ADD_SPLIT_FRACTION = 0.8  # of the test set the reference's "add" split puts into prober training
OUTPUTS = ("none", "stats", "logits", "all")


class TooFewMisses(ComponentFailure):
    """The prober's training data has too few misses (or hits) to learn from."""


class ProberScorer:
    """P(hit) from a prober (``mlp`` by default) trained on hidden features at
    ``layer`` (a list concatenates several layers; ``[]`` probes the outputs
    only), higher = more confident.

    Hit/miss training data (``source``), always on the training split, with
    features from the classifier being scored:

    - ``crossfit`` (default): out-of-fold outcomes. The training split is cut
      into ``folds`` parts; a copy of the classifier (same recipe,
      ``fold_options`` overriding its options) is trained on all but one part
      and judged on that part. Costs ``folds`` extra trainings, cached.
    - ``holdout``: like crossfit but the first fold only (1/``folds`` of the
      images, one extra training).
    - ``train``: the classifier's outcomes on its own training images (the
      reference recipe). A well-fit classifier is almost always right there.
    - ``reference-add-split``: NOT a clean protocol. ``train`` plus the
      outcomes on 80% of the clean *test* set, as the reference code's
      ``--split add`` does (``add_split_holdout`` gives the 20% it leaves
      out). Its test rows are inflated by test leakage: it exists to measure
      that, and its suite label should say so.

    ``outputs`` appends the classifier's outputs to the features: ``stats``
    (default: max softmax, log(1 - max softmax), top-2 probability margin,
    negative entropy, max logit, top-2 logit margin), ``logits`` (raw logits),
    ``all`` (both) or ``none``. With ``fold_outputs`` (crossfit/holdout) they
    are the fold model's outputs on the images it did not see, as at test
    time. ``augment`` lists registered corruptions (names, or tables with
    ``name``, ``severities`` and options) applied to the training images at
    ``augment_severities``: more, and more varied, misses. Choose ones the
    suite does not test on, or the shifted cells are not out-of-distribution
    for the prober.

    When the training data has fewer than ``min_misses`` misses (or hits) the
    scorer fails with a message saying so: it never trains on one class. The
    prober and its training facts (hit/miss counts, validation accuracy, F1,
    AUROC, P(hit) range) are cached; ``facts`` holds them after ``prepare`` and
    the run header records them. It can guide correctors
    (``probebench.kinds.Guide``): ``p_hit(images)`` runs the classifier and the
    prober differentiably. Defaults: measured on mnist-5k, see README "The prober".
    """

    name = "prober"
    version = (
        "2"  # 2: scores by a prober's log_odds where it defines one (the scores' cache key holds no prober version)
    )
    guides_correctors = True
    requests_classifiers = True  # the fold models (classifier_requests)
    nested_options = {"prober_options": ("prober", "prober")}  # checked against that prober at suite parse time
    option_help = {
        "prober": "registered prober (`probebench ls probers`)",
        "prober_options": "options of the prober, e.g. { epochs = 20, imbalance = 'sampler' }",
        "layer": "module name of the hidden layer (`probebench layers CLASSIFIER`), or a list to concatenate",
        "source": "hit/miss training data: train, holdout, crossfit or reference-add-split (train + 80% of the "
        "TEST set, the reference's --split add: leaks test data, for measuring that only)",
        "folds": "number of folds of crossfit (holdout uses the first: 1/folds of the training split)",
        "fold_options": "classifier options overriding the suite's for the fold models, e.g. { epochs = 4 }",
        "outputs": "append the classifier's outputs to the features: none, stats, logits or all",
        "augment": "corruptions applied to the training images for more misses (names or tables)",
        "augment_severities": "severities of the augment corruptions that do not list their own",
        "min_misses": "fewest misses (and hits) the training data must have; fewer fails with a message",
        "fold_outputs": "crossfit/holdout: take the appended outputs from the fold model (judging unseen images, "
        "as at test time) instead of the final classifier",
    }

    def __init__(
        self,
        prober: str = "mlp",
        prober_options: dict | None = None,
        layer: str | list = "fc_layer.4",
        source: str = "crossfit",
        folds: int = 2,
        fold_options: dict | None = None,
        outputs: str = "stats",
        augment: list | None = None,
        augment_severities: list = (2, 4),
        min_misses: int = 10,
        fold_outputs: bool = False,
    ):

        where = f"scorer {self.name!r}"
        layers = [layer] if isinstance(layer, str) else list(layer)
        if not all(isinstance(x, str) and x for x in layers):
            raise UserError(f"{where}: layer must be a module name or a list of them, got {layer!r}")
        if source not in SOURCES:
            raise UserError(f"{where}: source must be one of {', '.join(SOURCES)}, got {source!r}")
        if outputs not in OUTPUTS:
            raise UserError(f"{where}: outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
        if not layers and outputs == "none":
            raise UserError(f"{where}: no input: name a layer, or set outputs (layer = [] probes the outputs only)")
        if folds < 2:
            raise UserError(f"{where}: folds must be >= 2, got {folds}")
        if min_misses < 2:
            raise UserError(f"{where}: min_misses must be >= 2 (validation needs misses too), got {min_misses}")
        self.augment = [_augment_entry(a, list(augment_severities), where) for a in (augment or [])]
        self.prober_name, self.prober_options = prober, dict(prober_options or {})
        self.layers = tuple(layers)
        self.source, self.folds, self.fold_options = source, folds, dict(fold_options or {})
        self.outputs, self.min_misses, self.fold_outputs = outputs, min_misses, fold_outputs
        self.prober = None
        self.facts: dict = {}

    # -- prepare: build training data, fit (or load) the prober -------------
    def prepare(self, ctx) -> None:
        from probebench.pipeline.features import resolve_layer

        if ctx.registry is None:
            raise UserError(f"scorer {self.name!r} needs ctx.registry to create prober {self.prober_name!r}")
        for layer in self.layers:
            resolve_layer(ctx.classifier, layer)
        for name, _options, _severities in self.augment:
            ctx.registry.get("corruption", name)
        self.prober = ctx.registry.create("prober", self.prober_name, self.prober_options)
        cls = type(self.prober)
        key = [self.name, self.version, self._options(), cls.name, getattr(cls, "version", "1")]
        if hasattr(self.prober, "state_dict") and hasattr(self.prober, "load_state_dict"):
            payload = ctx.artifact("prober", key, lambda: self._fit(ctx))
            self.prober.load_state_dict(payload["prober"])
        else:  # a prober that cannot be saved is fitted again in each run
            payload = self._fit(ctx)
        self.facts = dict(payload["facts"])
        self.classifier = ctx.classifier

    def _options(self) -> dict:
        return {
            "prober_options": self.prober_options,
            "layers": list(self.layers),
            "source": self.source,
            "folds": self.folds,
            "fold_options": self.fold_options,
            "outputs": self.outputs,
            "augment": [list(a) for a in self.augment],
            "min_misses": self.min_misses,
            "fold_outputs": self.fold_outputs,
        }

    def _fit(self, ctx) -> dict:
        import torch

        from probebench.cache import hash_key

        features, hit, tcp, info = self.training_data(ctx)
        n_hit, n_miss = int(hit.sum()), int((~hit).sum())
        if min(n_hit, n_miss) < self.min_misses:
            fewer = "misses" if n_miss < n_hit else "hits"
            remedy = "use source='crossfit', " if self.source == "train" else "use fewer folds (weaker fold models), "
            raise TooFewMisses(
                f"too few {fewer} to learn from: source={self.source!r} gives {n_miss} misses and {n_hit} hits "
                f"at layer {'+'.join(self.layers) or '(outputs only)'} (min_misses={self.min_misses}); {remedy}"
                f"add corruptions with augment=[...], or lower min_misses"
            )
        torch.manual_seed(int(hash_key("prober-fit", ctx.seed)[:12], 16))
        if fits_true_class_probability(self.prober):
            self.prober.fit(features, hit, tcp)
        else:
            self.prober.fit(features, hit)
        facts = {
            "source": self.source,
            "layers": list(self.layers),
            "outputs": self.outputs,
            "feature_dim": int(features.shape[1]),
            **info,
            **getattr(self.prober, "facts", {}),
        }
        return {"prober": self.prober.state_dict() if hasattr(self.prober, "state_dict") else {}, "facts": facts}

    def training_data(self, ctx):
        """(features [M, D], hit [M], true-class probability [M], facts) of the
        prober's training data; hit and TCP come from the same logits."""
        import torch

        from probebench.pipeline.features import cached_forward

        if self.source == "reference-add-split":
            return self._add_split_data(ctx)
        labels = ctx.train_labels
        folds = self._fold_indices(ctx.seed, len(labels))
        features, hits, tcps = [], [], []
        info = {"n_images": len(labels), "views": []}
        for view in self._views():
            where, images = self._train_view(ctx, *view)
            logits, layer_features = cached_forward(ctx, images, self.layers, where)
            final_hit = logits.argmax(dim=1) == labels
            if self.source == "train":
                keep, judged, outputs = torch.arange(len(labels)), logits, logits
            else:
                used = folds[:1] if self.source == "holdout" else folds
                keep = torch.cat(used)
                judged = torch.cat([self._fold_logits(ctx, folds, f, where, images) for f in range(len(used))])
                outputs = judged if self.fold_outputs else logits[keep]
            hit, tcp = outcomes(judged, labels[keep])
            features.append(self.inputs(outputs, {k: v[keep] for k, v in layer_features.items()}))
            hits.append(hit)
            tcps.append(tcp)
            info["views"].append(
                {
                    "corruption": where["corruption"],
                    "severity": where["severity"],
                    "n": len(keep),
                    "n_miss": int((~hit).sum()),
                    "classifier_train_misses": int((~final_hit).sum()),
                }
            )
        return torch.cat(features), torch.cat(hits), torch.cat(tcps), info

    def _add_split_data(self, ctx):
        """The reference's ``--split add``: outcomes on the training split plus on
        80% of the clean test split (test leakage, declared in the facts)."""
        import torch

        from probebench.pipeline.features import cached_forward

        if ctx.test_images is None or ctx.test_labels is None:
            raise UserError(f"scorer {self.name!r}: source='reference-add-split' needs the test split in ctx")
        train = replace_source(self, "train")
        features, hit, tcp, info = train.training_data(ctx)
        leaked = add_split_leaked(ctx.seed, len(ctx.test_labels))
        where = {"split": "test", "corruption": "none", "options": {}, "severity": 0}
        logits, layer_features = cached_forward(ctx, ctx.test_images, self.layers, where)
        test_hit, test_tcp = outcomes(logits[leaked], ctx.test_labels[leaked])
        test_features = self.inputs(logits[leaked], {k: v[leaked] for k, v in layer_features.items()})
        info["leaks_test"] = {"n": len(leaked), "n_miss": int((~test_hit).sum()), "fraction": ADD_SPLIT_FRACTION}
        return (
            torch.cat([features, test_features]),
            torch.cat([hit, test_hit]),
            torch.cat([tcp, test_tcp]),
            info,
        )

    def _views(self) -> list[tuple]:
        views = [(None, {}, 0)]
        for name, options, severities in self.augment:
            views += [(name, options, severity) for severity in severities]
        return views

    def _train_view(self, ctx, corruption, options, severity):
        """(where, images) of the training split, clean or corrupted; the images
        are made only when a stage needs them (callable, memoised)."""
        from probebench.cache import hash_key

        where = {"split": "train", "corruption": corruption or "none", "options": options, "severity": severity}
        if corruption is None:
            return where, ctx.train_images
        made = []

        def images():
            if not made:
                from probebench.pipeline.data import corrupt
                from probebench.suite import CorruptionSpec

                # a seed of its own: test cells draw from corruption_generator(run seed, ...)
                seed = int(hash_key("prober-augment", ctx.seed)[:12], 16)
                made.append(
                    corrupt(ctx.registry, CorruptionSpec(corruption, options), ctx.train_images, severity, seed)
                )
            return made[0]

        return where, images

    def classifier_requests(self, seed: int, train_size: int) -> list[dict]:
        """The fold models ``prepare`` trains (``probebench.kinds.ClassifierRequests``)."""
        if self.source not in ("crossfit", "holdout"):
            return []
        folds = self._fold_indices(seed, train_size)
        used = 1 if self.source == "holdout" else len(folds)
        options = self.fold_options or None
        return [{"seed": seed, "subset": _rest(folds, fold), "options": options} for fold in range(used)]

    def _fold_indices(self, seed: int, n: int) -> list:
        import torch

        from probebench.cache import hash_key

        generator = torch.Generator().manual_seed(int(hash_key("prober-folds", seed, self.folds, n)[:12], 16))
        order = torch.randperm(n, generator=generator)
        return [order[f :: self.folds].sort().values for f in range(self.folds)]

    def _fold_logits(self, ctx, folds: list, fold: int, where: dict, images):
        """Logits on fold ``fold`` of a classifier trained on the other folds (cached)."""

        from probebench.pipeline.features import forward

        held_out = folds[fold]

        def build() -> dict:
            model = ctx.train_classifier(ctx.seed, subset=_rest(folds, fold), options=self.fold_options or None)
            pixels = images() if callable(images) else images
            logits, _ = forward(model, pixels[held_out], (), ctx.batch_size, ctx.device)
            return {"logits": logits}

        parts = ["fold-logits", self.folds, fold, self.fold_options, where]
        return ctx.artifact("fold-logits", parts, build)["logits"]

    # -- inputs and scores -------------------------------------------------
    def inputs(self, logits, layer_features: dict):
        """The prober's input: features at ``layers`` (in order), then the outputs."""
        import torch

        parts = [layer_features[layer].float() for layer in self.layers]
        if self.outputs in ("stats", "all"):
            parts.append(output_stats(logits))
        if self.outputs in ("logits", "all"):
            parts.append(logits.float())
        return torch.cat(parts, dim=1)

    def p_hit(self, images):
        """P(hit) [N] of images [N,C,H,W] through the classifier and the prober,
        differentiable with respect to the images (what correctors optimise)."""
        captured = {}
        handles = [
            self.classifier.get_submodule(layer).register_forward_hook(
                lambda _m, _i, out, layer=layer: captured.__setitem__(layer, out.flatten(1))
            )
            for layer in self.layers
        ]
        try:
            logits = self.classifier(images)
        finally:
            for handle in handles:
                handle.remove()
        return self.prober.predict(self.inputs(logits, captured))

    def score(self, ctx, batch):
        """P(hit), or the log-odds of a prober that defines ``log_odds`` (its
        P(hit) saturates: see ``probebench.kinds.Prober``)."""
        batch.prefetch(self.layers)
        inputs = self.inputs(batch.logits, {layer: batch.features(layer) for layer in self.layers})
        return getattr(self.prober, "log_odds", self.prober.predict)(inputs)


def replace_source(scorer: ProberScorer, source: str) -> ProberScorer:
    """A copy of ``scorer`` with another ``source`` (the same layers, outputs, augmentation)."""
    import copy

    other = copy.copy(scorer)
    other.source = source
    return other


def _rest(folds: list, fold: int):
    """The training indices of fold model ``fold``: every other fold's, sorted."""
    import torch

    return torch.cat([idx for f, idx in enumerate(folds) if f != fold]).sort().values


def add_split_leaked(seed: int, n: int):
    """Indices (sorted) of the ``ADD_SPLIT_FRACTION`` of an ``n``-image test set the
    ``reference-add-split`` source trains on; ``add_split_holdout`` is the rest."""
    import torch

    from probebench.cache import hash_key

    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(hash_key("add-split", seed, n)[:12], 16)))
    return order[: int(round(n * ADD_SPLIT_FRACTION))].sort().values


def add_split_holdout(seed: int, n: int):
    """Indices of the test images the ``reference-add-split`` source leaves out (its clean 20%)."""
    import torch

    keep = torch.ones(n, dtype=torch.bool)
    keep[add_split_leaked(seed, n)] = False
    return keep.nonzero().squeeze(1)


def outcomes(logits, labels):
    """(hit [N], true-class probability [N]) of logits [N, K] against labels [N]."""
    hit = logits.argmax(dim=1) == labels
    tcp = logits.float().softmax(dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    return hit, tcp


def output_stats(logits):
    """Class-agnostic summaries of the logits [N, K] -> [N, 6]: max softmax,
    log(1 - max softmax) (which keeps ranking where max softmax saturates at 1),
    top-2 probability margin, negative entropy, max logit, top-2 logit margin."""
    import torch

    logits = logits.float()
    log_probs = logits.log_softmax(dim=1)
    probs = log_probs.exp()
    top_p = probs.topk(2, dim=1).values
    top_z = logits.topk(2, dim=1).values
    # log(1 - p_max) = logsumexp of the other classes' log-probabilities (stable near p_max = 1)
    others = log_probs.clone()
    others.scatter_(1, log_probs.argmax(dim=1, keepdim=True), float("-inf"))
    return torch.stack(
        [
            top_p[:, 0],
            others.logsumexp(dim=1),
            top_p[:, 0] - top_p[:, 1],
            (probs * log_probs).sum(dim=1),
            top_z[:, 0],
            top_z[:, 0] - top_z[:, 1],
        ],
        dim=1,
    )


def _augment_entry(entry, severities: list, where: str) -> tuple:
    """(name, options, severities) of one ``augment`` entry."""

    if isinstance(entry, str):
        name, options = entry, {}
    elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
        options = dict(entry)
        name = options.pop("name")
        severities = options.pop("severities", severities)
    else:
        raise UserError(f"{where}: augment entries are corruption names or tables with a 'name', got {entry!r}")
    if (
        not isinstance(severities, (list, tuple))
        or not severities
        or not all(isinstance(s, int) and 1 <= s <= 5 for s in severities)
    ):
        raise UserError(f"{where}: augment severities must be a list of 1..5, got {severities!r}")
    return name, options, list(severities)


@hookimpl
def register_scorers():
    return [ProberScorer]
