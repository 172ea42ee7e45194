"""Reliability: isolation of failing plugins, cache integrity, determinism,
one-line errors for bad input, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probebench.cli import app
from probebench.errors import UserError

FAKE_PLUGINS = """
from probebench.hookspecs import hookimpl


class Raises:
    name = "raises"
    def score(self, ctx, batch):
        raise RuntimeError("boom")


class NaNs:
    name = "nans"
    def score(self, ctx, batch):
        out = batch.probs.max(1).values.clone()
        out[0] = float("nan")
        return out


class WrongShape:
    name = "wrong-shape"
    def score(self, ctx, batch):
        return batch.probs


class FailsPrepare:
    name = "fails-prepare"
    def prepare(self, ctx):
        raise ValueError("cannot prepare")
    def score(self, ctx, batch):
        return batch.probs.max(1).values


class FlatImages:
    name = "flat-images"
    num_classes = 10
    shape = (1, 28, 28)
    def load(self, split, root):
        import torch
        return torch.rand(20, 28, 28), torch.zeros(20, dtype=torch.long)


class Bright:
    name = "bright"
    num_classes = 10
    shape = (1, 28, 28)
    def load(self, split, root):
        import torch
        return torch.rand(20, 1, 28, 28) * 255, torch.zeros(20, dtype=torch.long)


@hookimpl
def register_scorers():
    return [Raises, NaNs, WrongShape, FailsPrepare]


@hookimpl
def register_datasets():
    return [FlatImages, Bright]
"""


@pytest.fixture
def fake_registry(tiny_registry, tmp_path, monkeypatch):
    """The tiny registry plus a plugin module whose components misbehave."""
    (tmp_path / "pb_fake_plugins.py").write_text(FAKE_PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("pb_fake_plugins", None)
    monkeypatch.setenv("PROBEBENCH_ALLOW_MODULES", "pb_fake_plugins")  # a registry file may import it (point 9)

    def write(scorers='["msp", "raises", "nans", "wrong-shape", "fails-prepare"]', extra=""):
        path = tiny_registry(extra=extra, scorers=scorers)
        text = path.read_text().replace("builtin = [", 'builtin = ["pb_fake_plugins", ', 1)
        path.write_text(text)
        return path

    return write


def invoke(runner, *args):
    return runner.invoke(app, list(map(str, args)))


def test_failing_plugins_fail_only_their_cells(runner, fake_registry, tmp_path):
    out = tmp_path / "run"
    result = invoke(runner, "run", "tiny", "--registry", fake_registry(), "--out", out)
    assert result.exit_code == 1, result.output
    head = json.loads((out / "run.json").read_text())
    failed = {(f["plugin"], f["stage"]) for f in head["failures"]}
    assert failed == {("raises", "score"), ("nans", "score"), ("wrong-shape", "score"), ("fails-prepare", "prepare")}
    messages = " ".join(f["message"] for f in head["failures"])
    assert "boom" in messages and "NaN" in messages and "shape" in messages and "cannot prepare" in messages
    import pandas as pd

    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(table["method"]) == {"-", "msp"}  # failed methods have no metric rows at all
    assert "4 component failure(s)" in result.output


def test_same_seed_gives_identical_files(runner, tiny_registry, tmp_path, monkeypatch):
    registry = tiny_registry()
    outs = []
    for name in ("a", "b"):
        monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path / f"cache-{name}"))  # nothing shared
        out = tmp_path / name
        # one device: float results on a GPU need not match the CPU's bit for bit
        assert invoke(runner, "run", "tiny", "--registry", registry, "--out", out, "--device", "cpu").exit_code == 0
        outs.append(out)
    for filename in ("results.csv", "scores.csv.gz"):
        assert (outs[0] / filename).read_bytes() == (outs[1] / filename).read_bytes(), filename
    heads = [json.loads((o / "run.json").read_text()) for o in outs]
    for head in heads:
        for volatile in ("started", "finished", "seconds"):
            head.pop(volatile)
    assert heads[0] == heads[1]


def test_corrupt_artifact_is_reported_and_rebuilt(runner, tiny_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path / "cache"))
    registry = tiny_registry()
    assert (
        invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "a", "--device", "cpu").exit_code == 0
    )
    checkpoints = list((tmp_path / "cache" / "classifier").glob("*.pt"))
    assert len(checkpoints) == 1
    checkpoints[0].write_bytes(checkpoints[0].read_bytes()[:100])  # truncated
    result = invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "b", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "is corrupt" in result.output and "rebuilding" in result.output
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()


def test_checkpoint_of_another_architecture(runner, tiny_registry, tmp_path, monkeypatch):
    import torch

    from probebench.cache import ArtifactStore

    monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path / "cache"))
    registry = tiny_registry()
    assert invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "a").exit_code == 0
    checkpoint = next((tmp_path / "cache" / "classifier").glob("*.pt"))
    ArtifactStore(tmp_path / "cache").save(
        "classifier", checkpoint.stem, {"state_dict": {"fc.weight": torch.zeros(2, 2)}}
    )
    result = invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "b")
    assert result.exit_code == 2
    assert "does not fit 'cnn'" in result.output and "--fresh" in result.output


class Evil:
    """Stands for any object a tampered checkpoint could smuggle in."""


def test_checkpoints_never_unpickle_objects(tmp_path):
    from probebench.cache import ArtifactStore

    store = ArtifactStore(tmp_path)
    store.save("x", "k", {"obj": Evil()})  # the checksum is right: only weights_only stands guard
    assert store.load("x", "k") is None  # refused, reported as corrupt, rebuilt by the caller


@pytest.mark.parametrize(
    "dataset, message",
    [
        ("flat-images", "expected float images [N,C,H,W], got (20, 28, 28)"),
        ("bright", "pixel values must lie in [0,1]"),
    ],
)
def test_images_of_wrong_shape_or_range(runner, fake_registry, dataset, message):
    registry = fake_registry(scorers='["msp"]')
    text = registry.read_text().replace('{ name = "mnist-5k", limit = 300 }', f'"{dataset}"')
    registry.write_text(text)
    result = invoke(runner, "run", "tiny", "--registry", registry)
    assert result.exit_code == 2 and message in result.output


def test_unwritable_output_folder(runner, tiny_registry, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke(runner, "run", "tiny", "--registry", tiny_registry(), "--out", blocker / "run")
    assert result.exit_code == 2 and "cannot write results to" in result.output


def test_disk_full_leaves_nothing_half_written(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    from probebench import results

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(UserError, match="No space left on device; nothing half-written"):
        results.write_run(tmp_path, [], {}, None)
    assert list(tmp_path.iterdir()) == []


def test_unknown_layer_lists_valid_names():
    from probebench.pipeline.features import resolve_layer
    from probebench.plugins.classifiers._cnn_net import CNNNet

    with pytest.raises(UserError, match=r"layer 'fc_layer.9' not found .*valid layers: conv_layer, conv_layer.0"):
        resolve_layer(CNNNet(10, (1, 28, 28)), "fc_layer.9")


@pytest.mark.parametrize(
    "args, message",
    [
        (["rnu"], "No such command"),
        (["run", "tiny", "--registry", "{bad}"], "malformed TOML"),
        (["run", "tiny", "--registry", "{missing}"], "not found"),
        (["run", "tiny", "--registry", "{reg}", "--seeds", "-1"], "non-negative"),
        (["run", "tiny", "--registry", "{reg}", "--device", "cuda"], "not available"),
    ],
)
def test_bad_input_exit_2(runner, tiny_registry, tmp_path, monkeypatch, args, message):
    bad = tmp_path / "bad.toml"
    bad.write_text("[suite.tiny]\ndataset = = 1\n")
    paths = {"{bad}": bad, "{missing}": tmp_path / "missing.toml", "{reg}": tiny_registry()}
    args = [str(paths.get(a, a)) for a in args]
    if "cuda" in args:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, even on one with
    result = invoke(runner, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("has_gpu", [False, True])
def test_device_auto_takes_the_gpu_when_there_is_one(monkeypatch, has_gpu):
    import torch

    from probebench.pipeline.run import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_gpu)
    assert resolve_device("auto") == torch.device("cuda" if has_gpu else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if has_gpu:
        assert resolve_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(UserError, match="device 'cuda' is not available on this machine"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def _run_cli(registry: Path, out: Path, cache: Path, suite: str = "tiny") -> subprocess.Popen:
    env = {**os.environ, "PROBEBENCH_CACHE": str(cache), "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "probebench",
            "run",
            suite,
            "--registry",
            str(registry),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_then_resume_equals_uninterrupted(tiny_registry, tmp_path):
    registry = tiny_registry()
    reference = tmp_path / "reference"
    assert _run_cli(registry, reference, tmp_path / "cache-ref").wait() == 0
    cache = tmp_path / "cache"
    kill_points = [
        lambda: (cache / "data").exists(),  # while training
        lambda: any((cache / "classifier").glob("*.sha256")),  # right after the checkpoint
        lambda: any((cache / "scores").glob("*.sha256")),  # after the first scored method
    ]
    for i, ready in enumerate(kill_points):
        _kill_when(_run_cli(registry, tmp_path / f"killed-{i}", cache), ready)
    resumed = tmp_path / "resumed"
    assert _run_cli(registry, resumed, cache).wait() == 0
    for filename in ("results.csv", "scores.csv.gz"):
        assert (resumed / filename).read_bytes() == (reference / filename).read_bytes()


CORRECTION_SUITE = """
[suite.tiny-correction]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", { name = "prober", source = "train", outputs = "none", min_misses = 2, prober_options = { epochs = 2 } }]
metrics = ["accuracy", "auroc"]
validation = 100
generators = [{ name = "realnvp", epochs = 1, levels = 1, blocks = 1, hidden = 8 }]
correctors = [{ name = "prober-latent", max_steps = 5 }, { name = "pixel-prober", max_steps = 5 }]
seeds = [0]
bootstrap = { resamples = 20 }
"""
WALL_CLOCK = ["images-per-second", "train-seconds"]  # measured, not computed: they differ between runs


def test_sigkill_during_generators_and_correction_then_resume(tiny_registry, tmp_path):
    """The generator and correction stages resume too: a run killed after the
    flow is saved, and again after the first corrector's edits are saved,
    finishes with the numbers of an uninterrupted run."""
    import pandas as pd

    registry = tiny_registry(CORRECTION_SUITE)
    reference = tmp_path / "reference"
    assert _run_cli(registry, reference, tmp_path / "cache-ref", "tiny-correction").wait() == 0
    cache = tmp_path / "cache"
    kill_points = [
        lambda: any((cache / "generator").glob("*.sha256")),
        lambda: any((cache / "correction").glob("*.sha256")),
    ]
    for i, ready in enumerate(kill_points):
        _kill_when(_run_cli(registry, tmp_path / f"killed-{i}", cache, "tiny-correction"), ready)
    assert list((cache / "correction").glob("*.sha256"))  # killed with at least one corrector's edits saved
    resumed = tmp_path / "resumed"
    assert _run_cli(registry, resumed, cache, "tiny-correction").wait() == 0
    assert len(list((cache / "correction").glob("*.sha256"))) == 4  # 2 correctors x (validation, test cell)

    def computed(run):
        table = pd.read_csv(run / "results.csv")
        return table[~table["metric"].isin(WALL_CLOCK)].reset_index(drop=True)

    pd.testing.assert_frame_equal(computed(resumed), computed(reference))
    assert {"correction-rate", "tuned-net-accuracy-gain", "bits-per-dim"} <= set(computed(resumed)["metric"])
    assert (resumed / "scores.csv.gz").read_bytes() == (reference / "scores.csv.gz").read_bytes()


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tiny_registry, tmp_path):
    env = {**os.environ, "PROBEBENCH_CACHE": str(tmp_path / "cache"), "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "probebench",
            "run",
            "tiny",
            "--registry",
            str(tiny_registry()),
            "--out",
            str(tmp_path / "run"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT and children inherit that;
        # restore the default so Python turns it into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "cache" / "data").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # Ctrl-C, repeated as an impatient user would (a signal that lands while a C library
    # is busy is handled when it returns; the first one handled must end the run)
    while process.poll() is None and time.monotonic() < deadline:
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "results.csv").exists()


def test_fresh_ignores_the_cache(runner, tiny_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path / "cache"))
    registry = tiny_registry()
    assert invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "a").exit_code == 0
    checkpoint = next((tmp_path / "cache" / "classifier").glob("*.pt"))
    before = checkpoint.stat().st_mtime_ns
    result = invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "b", "--fresh")
    assert result.exit_code == 0
    assert checkpoint.stat().st_mtime_ns > before  # retrained and rewritten
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()


def test_a_failed_prober_fails_its_correctors_not_the_run(runner, tiny_registry, tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path / "cache"))
    registry = tiny_registry(CORRECTION_SUITE.replace("min_misses = 2", "min_misses = 100000"))
    out = tmp_path / "run"
    result = invoke(runner, "run", "tiny-correction", "--registry", registry, "--out", out)
    assert result.exit_code == 1, result.output
    failures = json.loads((out / "run.json").read_text())["failures"]
    assert [(f["kind"], f["plugin"], f["stage"]) for f in failures] == [
        ("scorer", "prober", "prepare"),
        ("corrector", "prober-latent", "setup"),
        ("corrector", "pixel-prober", "setup"),
    ]
    table = pd.read_csv(out / "results.csv")
    assert {"msp", "realnvp"} <= set(table["method"]) and "prober-latent" not in set(table["method"])


def test_two_concurrent_runs_on_one_cache_give_correct_identical_results(tiny_registry, tmp_path):
    """Two processes run the same suite at once on one empty cache: both train, both write the
    same artifacts atomically; both finish with the numbers of a run alone, and the cache is sound."""
    registry = tiny_registry()
    cache = tmp_path / "shared-cache"
    first, second = (_run_cli(registry, tmp_path / name, cache) for name in ("first", "second"))
    assert first.wait() == 0 and second.wait() == 0
    reference = tmp_path / "alone"
    assert _run_cli(registry, reference, tmp_path / "cache-alone").wait() == 0
    for filename in ("results.csv", "scores.csv.gz"):
        expected = (reference / filename).read_bytes()
        assert (tmp_path / "first" / filename).read_bytes() == expected
        assert (tmp_path / "second" / filename).read_bytes() == expected
    verified = subprocess.run(
        [sys.executable, "-m", "probebench", "cache", "verify", "--cache-dir", str(cache), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0 and json.loads(verified.stdout) == [], verified.stdout + verified.stderr
