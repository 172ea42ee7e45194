"""What the driver (``run.py``) hands every stage: the ``Run`` of one suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from probebench.cache import ArtifactStore
from probebench.pipeline.data import Splits
from probebench.pipeline.failures import Failures
from probebench.suite import Suite

if TYPE_CHECKING:
    from probebench.registry import Registry


@dataclass
class Run:
    """One run of ``suite``: the registry its components come from, the
    artifact store, the loaded data, the output folder, and the component
    failures recorded so far."""

    suite: Suite
    registry: Registry
    store: ArtifactStore
    splits: Splits
    out: Path
    failures: Failures = field(default_factory=Failures)
