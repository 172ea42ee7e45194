"""A battery of bad inputs run against the real CLI (issue 17, points 9 and 10).

Every case must exit non-zero (2: the user's to fix), print no traceback,
say what is wrong in at most 3 lines, and leave an earlier run under
results/ byte for byte as it was, with no new run beside it. Most cases stop
before anything is trained; the data cases stop after reading the data.
The tests after the battery hold the pieces to what a user relies on:
allowed modules still load, option ranges and a bootstrap's memory estimate
are right, and a gzip bomb is never inflated.
"""

from __future__ import annotations

import gzip
import struct
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from probebench.cli import app
from tests.conftest import builtin_modules
from tests.test_datasets import write_bmp, write_idx, write_mnist

MARKER = "imported.txt"

EVIL_PLUGIN = f"""
from pathlib import Path
Path({MARKER!r}).write_text("a registry file ran this module")  # what antigravity's browser stood for
"""

FLOAT_LABELS_PLUGIN = """
from probebench.hookspecs import hookimpl


class FloatLabels:
    name = "float-labels"
    num_classes = 10
    shape = (1, 28, 28)

    def load(self, split, root=None):
        import torch

        images = torch.rand(40, 1, 28, 28)
        return images, torch.arange(40, dtype=torch.float32) % 10 * 0.9  # 0.9, 1.8, ...: not classes


@hookimpl
def register_datasets():
    return [FloatLabels]
"""

SUITE = """
[suite.bad]
dataset = {dataset}
classifier = {classifier}
scorers = {scorers}
metrics = ["accuracy", "auroc"]
seeds = [0]
bootstrap = {bootstrap}
"""
GOOD = {
    "dataset": '{ name = "mnist-5k", limit = 200 }',
    "classifier": '{ name = "cnn", epochs = 1, width = 8 }',
    "scorers": '["msp"]',
    "bootstrap": "{ resamples = 20 }",
}


@dataclass(frozen=True)
class Case:
    says: str  # a fragment of the one-line error
    suite: dict | None = None  # GOOD with these keys replaced
    toml: str | None = None  # or the whole registry file
    args: tuple[str, ...] = ()  # after `run bad --registry R`
    data: str = ""  # the data root, built by `data_root`
    before: tuple[str, ...] = ()  # options of `probebench` itself, before `run`


def case_registry(tmp: Path, case: Case) -> Path:
    path = tmp / "registry.toml"
    modules = ", ".join(f'"{m}"' for m in builtin_modules())
    if case.toml is not None:
        text = case.toml.replace("BUILTINS", modules)
    else:
        text = f"[plugins]\nbuiltin = [{modules}]\n" + SUITE.format(**{**GOOD, **(case.suite or {})})
    path.write_text(textwrap.dedent(text))
    return path


def data_root(tmp: Path, kind: str) -> Path:
    """A data root holding the bad files of ``kind``."""
    root = tmp / f"data-{kind}"
    mnist = root / "mnist"
    if kind == "short-header":
        write_mnist(mnist)
        (mnist / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03\0\0")  # 3 dimensions, 2 bytes of them
    elif kind == "gzip-bomb":
        write_mnist(mnist, gz=True)
        header = b"\0\0\x08\x03" + struct.pack(">3I", 1 << 20, 1 << 12, 1 << 12)  # claims 16 TiB
        with gzip.open(mnist / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as handle:
            handle.write(header + bytes(1 << 20))
    elif kind == "empty-train":
        write_mnist(mnist, n_train=0)
    elif kind == "empty-test":
        write_mnist(mnist, n_test=0)
    elif kind == "bmp-bomb":
        base = root / "CURE-TSR"
        write_bmp(base / "Real_Test" / "ChallengeFree" / "01_05_00_00_0001.bmp", 40)
        bomb = base / "Real_Train" / "ChallengeFree" / "01_01_00_00_0001.bmp"
        bomb.parent.mkdir(parents=True)
        width = height = 100_000  # 10^10 pixels from a 64-byte file
        info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
        bomb.write_bytes(b"BM" + struct.pack("<IHHI", 64, 0, 0, 54) + info + bytes(10))
    return root


CASES = {
    # point 9: a registry file is data, not code
    "builtin-outside-the-plugins-package": Case(
        "not a module of probebench.plugins",
        toml='[plugins]\nbuiltin = [BUILTINS, "pb_battery_evil"]\n' + SUITE.format(**GOOD),
    ),
    # point 10: every listed bad value
    "option-of-a-component-without-options": Case(
        "scorer 'msp' has no option 'temprature'", {"scorers": '[{ name = "msp", temprature = 2 }]'}
    ),
    "prober-option-misspelt": Case(
        "scorer 'prober' option 'prober_options': prober 'mlp' has no option 'epoch' (did you mean 'epochs'",
        {"scorers": '[{ name = "prober", prober_options = { epoch = 3 } }]'},
    ),
    "bootstrap-resamples-a-string": Case(
        "bootstrap resamples must be an integer", {"bootstrap": '{ resamples = "100" }'}
    ),
    "bootstrap-resamples-a-fraction": Case(
        "bootstrap resamples must be an integer", {"bootstrap": "{ resamples = 10.5 }"}
    ),
    "bootstrap-too-large-for-memory": Case(
        "resamples = 2000000 over 1000 test samples needs about 44.",
        {"dataset": '"mnist-5k"', "bootstrap": "{ resamples = 2000000 }"},
    ),
    "empty-training-split": Case(
        "split 'train' is empty", {"dataset": '"mnist"'}, args=("--data-root", "DATA"), data="empty-train"
    ),
    "empty-test-split": Case(
        "split 'test' is empty", {"dataset": '"mnist"'}, args=("--data-root", "DATA"), data="empty-test"
    ),
    "empty-test-split-from-an-option": Case(
        "split 'test' is empty", {"dataset": '{ name = "mnist-5k", test_fraction = 0.001 }'}
    ),
    "float-labels": Case(
        "labels must be whole class numbers",
        toml='[plugins]\nbuiltin = [BUILTINS, "pb_battery_floats"]\n'
        + SUITE.format(**{**GOOD, "dataset": '"float-labels"'}),
        before=("--allow-module", "pb_battery_floats"),
    ),
    "idx-short-header": Case(
        "ends inside its header", {"dataset": '"mnist"'}, args=("--data-root", "DATA"), data="short-header"
    ),
    "gzip-bomb": Case(
        "declares 17592186044416 bytes", {"dataset": '"mnist"'}, args=("--data-root", "DATA"), data="gzip-bomb"
    ),
    "bmp-bomb": Case("01_01_00_00_0001.bmp", {"dataset": '"cure-tsr"'}, args=("--data-root", "DATA"), data="bmp-bomb"),
    "network-too-large-to-build": Case(
        "does not fit in memory when built; lower its size options (epochs = 1, width = 100000)",
        {"classifier": '{ name = "cnn", epochs = 1, width = 100000 }'},
    ),
    # other numbers that accepted nonsense, through the declared option ranges
    "negative-epochs": Case("option 'epochs' must lie in [1, inf)", {"classifier": '{ name = "cnn", epochs = -1 }'}),
    "zero-learning-rate": Case("option 'lr' must lie in (0, inf)", {"classifier": '{ name = "cnn", lr = 0.0 }'}),
    "flow-learning-rate": Case(
        "generator 'realnvp' option 'lr' must lie in (0, inf)",
        toml="[plugins]\nbuiltin = [BUILTINS]\n"
        + SUITE.format(**GOOD)
        + 'generators = [{ name = "realnvp", lr = -1.0 }]\n',
    ),
    "dataset-limit-negative": Case(
        "option 'limit' must lie in [0, inf)", {"dataset": '{ name = "mnist-5k", limit = -5 }'}
    ),
    "bootstrap-seed-negative": Case("bootstrap seed must be >= 0", {"bootstrap": "{ resamples = 10, seed = -1 }"}),
    # malformed suites and cases handled before this issue: they must stay handled
    "malformed-toml": Case("malformed TOML", toml="[suite.bad\ndataset = 1\n"),
    "unknown-suite-key": Case("unknown key 'scorer'", toml=SUITE.format(**GOOD).replace("scorers =", "scorer =")),
    "missing-suite-key": Case(
        "missing key 'metrics'", toml=SUITE.format(**GOOD).replace('metrics = ["accuracy", "auroc"]', "")
    ),
    "unknown-component": Case("unknown scorer 'msq'", {"scorers": '["msq"]'}),
    "severity-outside-1-to-5": Case(
        "severities must be a list of 1..5",
        toml=SUITE.format(**GOOD) + 'corruptions = [{ name = "cure-noise", severities = [0, 6] }]\n',
    ),
    "negative-seed": Case(
        "'seeds' must be a non-empty list", toml=SUITE.format(**GOOD).replace("seeds = [0]", "seeds = [-1]")
    ),
    "wrong-option-type": Case("option 'epochs' must be int", {"classifier": '{ name = "cnn", epochs = "8" }'}),
    "missing-data-root": Case("needs --data-root", {"dataset": '"mnist"'}),
}


@pytest.fixture
def earlier_run(tmp_path) -> dict[Path, bytes]:
    """results/ with a finished run in it: every file's bytes."""
    run = tmp_path / "results" / "mnist-quick-earlier"
    run.mkdir(parents=True)
    (run / "results.csv").write_text("suite,dataset,method,metric,value\nmnist-quick,mnist-5k,msp,auroc,0.9\n")
    (run / "run.json").write_text('{"status": "finished"}\n')
    (tmp_path / "results" / "LEADERBOARD.md").write_text("# leaderboard\n")
    return files_under(tmp_path / "results")


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_short_error_before_the_work_and_loses_nothing(
    name, runner, tmp_path, monkeypatch, earlier_run
):
    case = CASES[name]
    (tmp_path / "pb_battery_evil.py").write_text(EVIL_PLUGIN)
    (tmp_path / "pb_battery_floats.py").write_text(FLOAT_LABELS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pb_battery_evil", raising=False)
    registry = case_registry(tmp_path, case)
    root = str(data_root(tmp_path, case.data)) if case.data else ""
    args = [*case.before, "run", "bad", "--registry", str(registry), *(root if a == "DATA" else a for a in case.args)]

    result = runner.invoke(app, args)

    output = result.output
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an exception escaping the CLI
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, output
    assert case.says in " ".join(output.split()), output
    assert files_under(tmp_path / "results") == earlier_run  # the earlier run is intact, no new run beside it
    assert not (tmp_path / MARKER).exists()  # no module outside probebench.plugins was imported


def test_a_bad_input_through_the_installed_command_is_one_line(tmp_path):
    """The same contract through the console script, in a fresh process."""
    import subprocess

    registry = case_registry(tmp_path, CASES["option-of-a-component-without-options"])
    done = subprocess.run(
        [sys.executable, "-m", "probebench", "run", "bad", "--registry", str(registry)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert output.strip().count("\n") == 0, output
    assert "scorer 'msp' has no option 'temprature'; its options: none" in " ".join(output.split())


# -- point 9: a deliberate module still loads ------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_deliberately_allowed_module_is_imported(how, runner, tmp_path, monkeypatch):
    (tmp_path / "pb_battery_evil.py").write_text(EVIL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pb_battery_evil", raising=False)  # imported afresh: it writes the marker
    registry = case_registry(tmp_path, CASES["builtin-outside-the-plugins-package"])
    args = ["ls", "--registry", str(registry)]
    if how == "option":
        args = ["--allow-module", "pb_battery_evil", *args]
    else:
        monkeypatch.setenv("PROBEBENCH_ALLOW_MODULES", "other, pb_battery_evil")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / MARKER).exists()


def test_allowing_one_module_does_not_allow_another(runner, tmp_path, monkeypatch):
    (tmp_path / "pb_battery_evil.py").write_text(EVIL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pb_battery_evil", raising=False)  # imported afresh: it writes the marker
    registry = case_registry(tmp_path, CASES["builtin-outside-the-plugins-package"])
    result = runner.invoke(app, ["--allow-module", "pb_battery_evil2", "ls", "--registry", str(registry)])
    assert result.exit_code == 2 and "--allow-module pb_battery_evil" in result.output
    assert not (tmp_path / MARKER).exists()


def test_a_module_named_like_the_plugins_package_is_not_inside_it():
    from probebench.errors import UserError
    from probebench.suite import check_builtin

    with pytest.raises(UserError, match="probebench.pluginsx"):
        check_builtin(Path("r.toml"), ["probebench.pluginsx.evil"])
    check_builtin(Path("r.toml"), ["probebench.plugins", "probebench.plugins.scorers.softmax"])


# -- point 10: the mechanisms behind the battery -----------------------------------------------------


def test_options_of_a_class_without_a_constructor_are_none():
    from probebench.registry import options_of

    class NoOptions:
        name = "plain"

    assert options_of(NoOptions) == {}


def test_a_component_with_kwargs_takes_only_its_documented_options():
    from probebench.errors import UserError
    from probebench.registry import check_options

    class Open:
        name = "open"
        option_help = {"depth": "how deep"}

        def __init__(self, width: int = 1, **extra):
            self.extra = extra

    check_options("scorer", "open", Open, {"width": 2, "depth": 3})
    with pytest.raises(UserError, match="has no option 'dpeth'.*its options: width, depth"):
        check_options("scorer", "open", Open, {"dpeth": 3})


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [("[1, inf)", [1, 2, 10**9], [0, -1, 0.5]), ("(0, 1)", [0.5, 1e-9], [0, 1, 2]), ("[1, 5]", [1, 5], [0, 6])],
)
def test_option_ranges_are_intervals_as_written_in_mathematics(bounds, inside, outside):
    from probebench.registry import in_range

    assert all(in_range(bounds, v) for v in inside)
    assert not any(in_range(bounds, v) for v in outside)


def test_a_malformed_option_range_is_the_plugin_authors_error():
    from probebench.errors import PluginError
    from probebench.registry import check_options

    class Sloppy:
        name = "sloppy"
        option_ranges = {"k": ">= 1"}

        def __init__(self, k: int = 1):
            self.k = k

    with pytest.raises(PluginError, match="option_ranges\\['k'\\]"):
        check_options("scorer", "sloppy", Sloppy, {"k": 2})


def test_every_declared_option_range_names_an_option_and_admits_its_default():
    import inspect

    from probebench.registry import Registry, in_range, options_of

    registry = Registry(builtin_modules(), autoload=False)
    declared = 0
    for kind in registry.entries.values():
        for entry in kind.values():
            options = options_of(entry.cls)
            for key, bounds in (getattr(entry.cls, "option_ranges", {}) or {}).items():
                assert key in options, (entry.name, key)
                default = options[key].default
                if default is not inspect.Parameter.empty and default is not None:
                    assert in_range(bounds, default), (entry.name, key, default)
                declared += 1
    assert declared >= 30


def test_the_bootstrap_memory_estimate_bounds_what_it_allocates():
    import tracemalloc

    from probebench.evaluate import Resamples, bootstrap_bytes

    n, resamples = 3000, 400
    confidence, hit = np.random.default_rng(0).random(n), np.arange(n) % 7 != 0
    tracemalloc.start()
    draw = Resamples.draw(n, resamples, seed=0)
    for _batch in draw.sorted_batches(confidence, hit):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    estimate = bootstrap_bytes(n, resamples, metrics=1)
    assert peak <= estimate <= 3 * peak


def test_the_bootstrap_memory_check_names_the_number_and_the_limit():
    from probebench.errors import UserError
    from probebench.evaluate import check_bootstrap_memory
    from probebench.suite import Bootstrap

    check_bootstrap_memory(Bootstrap(resamples=1000), 1000, 9, available=8 << 30)
    with pytest.raises(UserError, match=r"resamples = 2000000 over 1000 test samples needs about 44\.\d GiB.*8\.0 GiB"):
        check_bootstrap_memory(Bootstrap(resamples=2_000_000), 1000, 9, available=8 << 30)


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """An idx header that claims 4 bytes, then 64 MiB of zeros: only the
    declared bytes are read (today's loader inflated the whole stream)."""
    import tracemalloc

    from probebench.errors import UserError
    from probebench.plugins.datasets.mnist_idx import read_idx

    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(b"\0\0\x08\x01" + struct.pack(">I", 4))
        for _ in range(64):
            handle.write(bytes(1 << 20))
    tracemalloc.start()
    with pytest.raises(UserError, match="holds 5\\+ bytes of data, its header says 4"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_an_idx_file_is_read_exactly_as_its_header_says(tmp_path):
    from probebench.plugins.datasets.mnist_idx import read_idx

    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "raw" / "a", array)
    write_idx(tmp_path / "gz" / "a", array, gz=True)
    assert np.array_equal(read_idx(tmp_path / "raw" / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "gz" / "a.gz"), array)


def test_whole_float_labels_are_classes(tmp_path):
    import torch

    from probebench.pipeline.data import check_labels

    assert check_labels(torch.tensor([0.0, 3.0, 9.0]), "here").tolist() == [0, 3, 9]
    assert check_labels(np.array([1, 2], dtype=np.uint8), "here").dtype == torch.int64
