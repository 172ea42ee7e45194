"""Templates for ``probebench new-plugin``: a plugin package skeleton per kind.

Each skeleton is a complete distribution: ``pyproject.toml`` with the
``probebench`` entry point, one module holding one working component and its
hook, a README, and one test (``probebench.testing``) that passes once the
package is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from probebench.errors import UserError, suggest

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Names:
    """Every name a skeleton needs, derived from the distribution name."""

    distribution: str  # probebench-logit-gap
    module: str  # probebench_logit_gap
    component: str  # logit-gap
    cls: str  # LogitGap
    kind: str  # scorer

    @classmethod
    def from_distribution(cls, distribution: str, kind: str) -> Names:
        kind = kind[:-1] if kind.endswith("s") and kind[:-1] in COMPONENTS else kind
        if not NAME_PATTERN.match(distribution):
            raise UserError(
                f"plugin name {distribution!r} must be lower-case kebab-case (letters, digits, single "
                f"hyphens), e.g. probebench-logit-gap"
            )
        if kind not in COMPONENTS:
            raise UserError(f"unknown kind {kind!r}{suggest(kind, COMPONENTS)}; kinds: {', '.join(COMPONENTS)}")
        component = distribution.removeprefix("probebench-") or distribution
        camel = "".join(part.capitalize() for part in component.split("-"))
        if camel[0].isdigit():
            camel = "C" + camel
        return cls(distribution, distribution.replace("-", "_"), component, camel, kind)

    def substitutions(self) -> dict[str, str]:
        return {
            "dist": self.distribution,
            "module": self.module,
            "component": self.component,
            "cls": self.cls,
            "kind": self.kind,
        }


COMPONENTS: dict[str, str] = {
    "scorer": '''
class ${cls}:
    """Top-1 minus top-2 logit, divided by a temperature: a wide gap means a
    confident prediction. Higher = more confident the prediction is right.

    Replace this with your method; keep the first line a one-line summary
    (`probebench ls` shows it).
    """

    name = "${component}"
    version = "1"  # bump when a change alters the scores: it enters cache keys
    reference = "Cite the paper your method comes from here."
    option_help = {"temperature": "divide the logits by this before taking the gap"}

    def __init__(self, temperature: float = 1.0):

        if temperature <= 0:
            raise UserError(f"${component}: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def score(self, ctx, batch):
        top2 = (batch.logits / self.temperature).topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]
''',
    "corrector": '''
class ${cls}:
    """Signed-gradient pixel steps that raise the classifier's top-class
    probability. Uses no label.

    Replace this with your method: return the edited images and the steps each
    sample took (0 where you left it alone).
    """

    name = "${component}"
    version = "1"
    reference = "Cite the paper your method comes from here."
    option_help = {"step_size": "L-infinity size of each pixel step", "steps": "number of steps"}

    def __init__(self, step_size: float = 0.01, steps: int = 5):

        if step_size <= 0 or steps < 1:
            raise UserError(f"${component}: step_size must be > 0 and steps >= 1, got {step_size}, {steps}")
        self.step_size, self.steps = step_size, steps

    def correct(self, ctx, images):
        import torch

        from probebench.kinds import Correction

        edited = []
        with torch.enable_grad():  # the caller may hold torch.no_grad()
            for chunk in images.split(ctx.batch_size):
                x = chunk.to(ctx.device).clone()
                for _ in range(self.steps):
                    x.requires_grad_(True)
                    top = ctx.classifier(x).log_softmax(dim=1).max(dim=1).values.sum()
                    (grad,) = torch.autograd.grad(top, x)
                    x = (x + self.step_size * grad.sign()).clamp(0, 1).detach()
                edited.append(x.to(images.device))
        steps = torch.full((len(images),), self.steps, dtype=torch.long)
        return Correction(torch.cat(edited), steps)
''',
    "metric": '''
class ${cls}:
    """Accuracy of the most confident predictions: keep the ``coverage``
    fraction of samples with the highest confidence, report the share of hits.
    """

    name = "${component}"
    higher_is_better = True
    version = "1"
    reference = "Selective classification; cite the paper your metric comes from here."
    option_help = {"coverage": "fraction of samples kept, most confident first"}

    def __init__(self, coverage: float = 0.5):

        if not 0 < coverage <= 1:
            raise UserError(f"${component}: coverage must lie in (0, 1], got {coverage}")
        self.coverage = coverage

    def __call__(self, confidence, hit):
        import numpy as np

        confidence = np.asarray(confidence, dtype=float)
        hit = np.asarray(hit, dtype=bool)
        keep = max(1, round(self.coverage * confidence.shape[-1]))
        order = np.argsort(-confidence, axis=-1, kind="stable")[..., :keep]
        value = np.take_along_axis(hit, order, axis=-1).mean(axis=-1)
        return float(value) if value.ndim == 0 else value
''',
    "dataset": '''
class ${cls}:
    """Images and labels from local files ``<data-root>/train.npz`` and
    ``<data-root>/test.npz``, each with arrays ``images`` (uint8 [N,H,W] or
    [N,H,W,C]) and ``labels`` (integers [N]). Never downloads.
    """

    name = "${component}"
    version = "1"
    reference = "Cite where the data comes from here."
    option_help = {
        "num_classes": "number of classes (labels are 0..num_classes-1)",
        "channels": "channels per image (1 grey, 3 colour)",
        "size": "height and width of the images",
    }

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = 28):

        if num_classes < 2 or channels not in (1, 3) or size < 1:
            raise UserError("${component}: need num_classes >= 2, channels 1 or 3, size >= 1")
        self.num_classes = num_classes
        self.shape = (channels, size, size)

    def load(self, split, root):
        from pathlib import Path

        import numpy as np
        import torch


        if root is None:
            raise UserError("${component}: pass --data-root DIR, a folder holding train.npz and test.npz")
        path = Path(root) / f"{split}.npz"
        if not path.is_file():
            raise UserError(f"${component}: {path} not found; it needs arrays images (uint8 [N,H,W,C]) and labels")
        with np.load(path) as data:
            images, labels = data["images"], data["labels"]
        if images.ndim == 3:
            images = images[..., None]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
        return x.contiguous(), torch.from_numpy(labels.astype(np.int64))
''',
    "corruption": '''
class ${cls}:
    """Additive Gaussian pixel noise whose standard deviation grows linearly
    with severity (``max_sigma`` at severity 5), clipped to [0, 1].
    """

    name = "${component}"
    version = "1"
    reference = "Cite the paper your corruption comes from here."
    option_help = {"max_sigma": "noise standard deviation at severity 5"}

    def __init__(self, max_sigma: float = 0.3):

        if max_sigma <= 0:
            raise UserError(f"${component}: max_sigma must be > 0, got {max_sigma}")
        self.max_sigma = max_sigma

    def __call__(self, images, severity, generator):
        import torch

        sigma = self.max_sigma * severity / 5
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        return (images + sigma * noise).clamp(0, 1)
''',
    "classifier": '''
class ${cls}:
    """A two-layer perceptron. Its layers are addressable by name: ``1`` is
    the hidden Linear layer, ``2`` the ReLU after it (a prober's usual layer).
    The harness trains it with ``epochs``, ``lr`` and ``batch_size``.
    """

    name = "${component}"
    version = "1"
    reference = "Cite the architecture's paper here."
    option_help = {"hidden": "units in the hidden layer", "epochs": "training epochs",
                   "lr": "peak learning rate", "batch_size": "training batch size"}

    def __init__(self, hidden: int = 128, epochs: int = 3, lr: float = 1e-3, batch_size: int = 128):

        if hidden < 1 or epochs < 1 or batch_size < 1 or lr <= 0:
            raise UserError("${component}: hidden, epochs, batch_size and lr must be positive")
        self.hidden, self.epochs, self.lr, self.batch_size = hidden, epochs, lr, batch_size

    def build(self, num_classes, shape):
        import torch

        channels, height, width = shape
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(channels * height * width, self.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(self.hidden, num_classes),
        )
''',
    "generator": '''
class ${cls}:
    """An element-wise logit flow: exactly invertible and cheap, with a
    standard normal prior. A starting point to swap for a real flow (RealNVP,
    Glow) with the same three methods.
    """

    name = "${component}"
    version = "1"
    reference = "Cite the flow's paper here."
    option_help = {"alpha": "pixels are squeezed into [alpha, 1 - alpha] before the logit"}

    def __init__(self, alpha: float = 0.05):

        if not 0 < alpha < 0.5:
            raise UserError(f"${component}: alpha must lie in (0, 0.5), got {alpha}")
        self.alpha = alpha

    def build(self, shape):
        import math

        import torch

        alpha = self.alpha

        class LogitFlow(torch.nn.Module):
            def encode(self, x):
                y = alpha + (1 - 2 * alpha) * x
                return torch.log(y) - torch.log1p(-y)

            def decode(self, z):
                return ((torch.sigmoid(z) - alpha) / (1 - 2 * alpha)).clamp(0, 1)

            def log_prob(self, x):
                y = alpha + (1 - 2 * alpha) * x
                z = torch.log(y) - torch.log1p(-y)
                log_det = math.log(1 - 2 * alpha) - torch.log(y) - torch.log1p(-y)
                prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
                return (prior + log_det).flatten(1).sum(dim=1)

        return LogitFlow()
''',
    "prober": '''
class ${cls}:
    """Logistic regression on standardised features, with class weights that
    balance hits and misses (misses are rare). Predicts P(hit); uses no label
    at test time.
    """

    name = "${component}"
    version = "1"
    reference = "Cite the paper your prober comes from here."
    option_help = {"steps": "full-batch gradient steps", "lr": "learning rate"}

    def __init__(self, steps: int = 300, lr: float = 0.5):

        if steps < 1 or lr <= 0:
            raise UserError(f"${component}: steps and lr must be positive, got {steps}, {lr}")
        self.steps, self.lr = steps, lr

    def fit(self, features, hit):
        import torch

        x = features.float()
        y = hit.float()
        self.mean, self.std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
        x = (x - self.mean) / self.std
        share = y.mean().clamp(1e-3, 1 - 1e-3)
        weight = torch.where(y > 0.5, 0.5 / share, 0.5 / (1 - share))
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        for _ in range(self.steps):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, weight=weight)
            grad_w, grad_b = torch.autograd.grad(loss, (w, b))
            with torch.no_grad():
                w -= self.lr * grad_w
                b -= self.lr * grad_b
        self.w, self.b = w.detach(), b.detach()

    def predict(self, features):
        import torch

        return torch.sigmoid(((features.float() - self.mean) / self.std) @ self.w + self.b)
''',
}

# How the generated test exercises the component (probebench.testing.check_<kind>).
CHECK_CALLS: dict[str, str] = {kind: "check_${kind}(${cls}())" for kind in COMPONENTS}
CHECK_CALLS["dataset"] = """rng = np.random.default_rng(0)
    for split in ("train", "test"):
        images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
        np.savez(tmp_path / f"{split}.npz", images=images, labels=np.arange(20) % 10)
    check_dataset(${cls}(), root=str(tmp_path))"""

MODULE = '''"""${dist}: a probebench ${kind} plugin.

probebench imports this module on every start (even `probebench ls`), so keep
it light: import torch, numpy and your model code inside methods.
"""

from __future__ import annotations

from probebench.hookspecs import hookimpl

__version__ = "0.1.0"

${component_code}

@hookimpl
def register_${kind}s():
    return [${cls}]
'''

TEST = '''"""${dist}: the ${kind} keeps its contract and is found once the package is installed."""
${imports}
from probebench.testing import check_${kind}, installed_registry

from ${module} import ${cls}


def test_${module}_is_installed_and_keeps_the_${kind}_contract(${fixtures}):
    assert installed_registry().get("${kind}", "${component}") is ${cls}, "pip install the package first"
    ${check_call}
'''

PYPROJECT = """[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "${dist}"
version = "0.1.0"
description = "A probebench ${kind}: ${component}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["probebench"]

[project.optional-dependencies]
test = ["pytest>=8"]

# probebench finds the plugin through this entry point (group "probebench").
[project.entry-points.probebench]
${component} = "${module}"

[tool.setuptools]
packages = ["${module}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """# ${dist}

A probebench ${kind} plugin registering `${component}`.

```bash
pip install -e '.[test]'   # from this folder; probebench must be installed
python -m pytest           # the contract test in tests/
probebench plugins         # lists "${component}" with its version
probebench show ${kind} ${component}
```

Name `${component}` in a suite of your registry file, e.g. `scorers = ["msp", "${component}"]`,
then `probebench run SUITE --registry FILE`. The plugin author's guide
(docs/plugins.md in probebench) documents the ${kind} contract.
"""


def render(template: str, names: Names, **extra: str) -> str:
    return Template(template).substitute(names.substitutions(), **extra)


def write_plugin(distribution: str, kind: str, out: Path) -> Path:
    """Write the skeleton of ``distribution`` (one ``kind`` component) into
    ``out/<distribution>``; returns that folder."""
    names = Names.from_distribution(distribution, kind)
    root = Path(out) / distribution
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root} already exists and is not empty; choose another --out or name")
    component_code = render(COMPONENTS[kind], names)
    check_call = render(CHECK_CALLS[kind], names)
    files = {
        "pyproject.toml": render(PYPROJECT, names),
        "README.md": render(README, names),
        f"{names.module}/__init__.py": render(MODULE, names, component_code=component_code),
        f"tests/test_{names.module}.py": render(
            TEST,
            names,
            check_call=check_call,
            imports="\nimport numpy as np\n" if kind == "dataset" else "",
            fixtures="tmp_path" if kind == "dataset" else "",
        ),
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
