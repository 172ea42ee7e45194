"""The pipeline, one module per stage, in the order a run goes through them
(see DESIGN.md):

- ``data.py``: load and check the dataset's splits; corrupt test images.
- ``train.py``: train the classifier (cached); ``generate.py`` trains the
  flow generators with the same loop.
- ``features.py``: batched forward passes capturing hidden layers (cached).
- ``score.py``: predictions and every scorer's confidence per test cell (cached).
- ``evaluate.py``: labels judge: metric rows per cell, correction metrics.
- ``correct.py``: edit test images without labels, guided by a scorer that
  declares it can (cached), and re-classify them.

``graph.py`` makes a run one graph of stage tasks (per seed and test cell),
which ``run.py`` hands to an executor (``probebench.executors``). ``cells.py`` names the
cells; ``context.py`` is what components see (``Context``, ``Batch``),
``stage.py`` what stages see (``Run``), and ``failures.py`` decides which
errors stop a run and which fail one component.
"""
