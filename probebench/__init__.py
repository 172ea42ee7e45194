"""probebench: benchmark miss detection and label-free correction of image classifiers.

From Python (docs/api.md)::

    import probebench
    run = probebench.run("mnist-quick", seeds=[0])
    probebench.leaderboard(run)

The core (plugin manager, suites, pipeline, results) names no concrete method.
Importing this package imports neither torch nor pandas.
"""

import sys
import types
from typing import Any

from probebench import api
from probebench.api import Run, import_scores, leaderboard, load_run, run

__version__ = "0.1.0"

__all__ = ["Run", "__version__", "evaluate", "import_scores", "leaderboard", "load_run", "run"]


class _Package(types.ModuleType):
    """Keeps ``probebench.evaluate`` the API function: importing the statistics
    submodule ``probebench.evaluate`` would otherwise rebind the name to it
    (reach that module with ``importlib.import_module("probebench.evaluate")``
    or ``from probebench.evaluate import ...``)."""

    @property
    def evaluate(self) -> Any:
        return api.evaluate

    @evaluate.setter
    def evaluate(self, _submodule: object) -> None:
        pass  # the import system announcing the submodule: the function stays


sys.modules[__name__].__class__ = _Package
evaluate = api.evaluate
