"""``probebench cache``, and runs that meet a damaged or unwritable cache:
cached scores are validated like fresh ones, write failures never lose the run."""

from __future__ import annotations

import errno
import json
import os
import time

import torch

from probebench.cache import ArtifactStore
from probebench.cli import app


def invoke(runner, *args, **kwargs):
    return runner.invoke(app, list(map(str, args)), **kwargs)


def run_tiny(runner, registry, out, cache):
    return invoke(runner, "run", "tiny", "--registry", registry, "--out", out, "--cache-dir", cache, "--device", "cpu")


def test_cached_scores_with_nan_or_the_wrong_shape_are_recomputed(runner, tiny_registry, tmp_path):
    registry, cache = tiny_registry(), tmp_path / "cache"
    assert run_tiny(runner, registry, tmp_path / "a", cache).exit_code == 0
    store = ArtifactStore(cache)
    nan, wrong_shape = sorted((cache / "scores").glob("*.pt"))  # msp and entropy on the clean cell
    n = len(store.load("scores", nan.stem)["scores"])
    store.save("scores", nan.stem, {"scores": torch.full((n,), float("nan"))})  # a valid file, bad values
    store.save("scores", wrong_shape.stem, {"scores": torch.zeros(n, 2)})
    result = run_tiny(runner, registry, tmp_path / "b", cache)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "NaN or infinite scores" in said and "returned scores of shape" in said and "rebuilding it" in said
    assert json.loads((tmp_path / "b" / "run.json").read_text())["failures"] == []
    for name in ("results.csv", "scores.csv.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_run_on_a_cache_it_cannot_write_warns_once_and_finishes(runner, tiny_registry, tmp_path, monkeypatch):
    import probebench.cache as cache

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "atomic_write", full)
    result = run_tiny(runner, tiny_registry(), tmp_path / "run", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).count("going on without caching") == 1
    assert "Traceback" not in result.output and (tmp_path / "run" / "results.csv").is_file()


def test_a_cache_dir_that_is_a_file_stops_the_run_before_any_work(runner, tiny_registry, tmp_path):
    (tmp_path / "cache").write_text("")
    result = run_tiny(runner, tiny_registry(), tmp_path / "run", tmp_path / "cache")
    assert result.exit_code == 2 and "is a file; pass --cache-dir DIR" in result.output
    assert not (tmp_path / "run").exists()


# -- the command --------------------------------------------------------------------
def filled_cache(root):
    store = ArtifactStore(root)
    store.save("classifier", "a", {"w": torch.zeros(3)})
    store.save("scores", "b", {"scores": torch.ones(4)})
    store.save("scores", "c", {"scores": torch.ones(4)})
    return store


def test_path_and_ls(runner, tmp_path):
    filled_cache(tmp_path)
    assert invoke(runner, "cache", "path", "--cache-dir", tmp_path).output.strip() == str(tmp_path)
    listed = invoke(runner, "cache", "ls", "--cache-dir", tmp_path)
    assert listed.exit_code == 0 and "classifier" in listed.output and "3 artifacts" in listed.output
    rows = json.loads(invoke(runner, "cache", "ls", "--cache-dir", tmp_path, "--json").output)
    assert sorted((r["stage"], r["key"]) for r in rows) == [("classifier", "a"), ("scores", "b"), ("scores", "c")]


def test_verify_lists_bad_artifacts_and_exits_1(runner, tmp_path):
    filled_cache(tmp_path)
    assert invoke(runner, "cache", "verify", "--cache-dir", tmp_path).exit_code == 0
    damaged = tmp_path / "scores" / "b.pt"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    for suffix in (".pt", ".sha256"):  # c's own bytes under a's name: checksums agree, the key does not
        (tmp_path / "classifier" / f"a{suffix}").write_bytes((tmp_path / "scores" / f"c{suffix}").read_bytes())
    result = invoke(runner, "cache", "verify", "--cache-dir", tmp_path, "--json")
    assert result.exit_code == 1
    bad = {item["path"]: item["problem"] for item in json.loads(result.stdout)}
    assert bad == {
        str(damaged): "checksum mismatch",
        str(tmp_path / "classifier" / "a.pt"): bad[str(tmp_path / "classifier" / "a.pt")],
    }
    assert "does not hold classifier/a" in bad[str(tmp_path / "classifier" / "a.pt")]


def test_gc_removes_leftovers_of_killed_writes_and_stale_artifacts(runner, tmp_path):
    filled_cache(tmp_path)
    killed = tmp_path / "scores" / ".b.pt.x1y2z3"  # what kill -9 during torch.save leaves
    in_flight = tmp_path / "scores" / ".c.pt.a1b2c3"  # another run writing right now
    orphan = tmp_path / "scores" / "gone.sha256"
    for path in (killed, in_flight, orphan):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(killed, (hours_ago, hours_ago))
    month_ago = time.time() - 30 * 86400
    os.utime(tmp_path / "classifier" / "a.sha256", (month_ago, month_ago))  # a's last use

    dry = invoke(runner, "cache", "gc", "--cache-dir", tmp_path, "--older-than", 7, "--dry-run", "--json")
    assert sorted(json.loads(dry.output)) == sorted(map(str, [killed, orphan, tmp_path / "classifier" / "a.pt"]))
    assert killed.exists() and orphan.exists() and (tmp_path / "classifier" / "a.pt").exists()

    assert invoke(runner, "cache", "gc", "--cache-dir", tmp_path).exit_code == 0
    assert not killed.exists() and not orphan.exists() and in_flight.exists()
    assert (tmp_path / "classifier" / "a.pt").exists()  # used within --older-than's default: never
    assert invoke(runner, "cache", "gc", "--cache-dir", tmp_path, "--older-than", 7).exit_code == 0
    assert not (tmp_path / "classifier").exists()
    assert ArtifactStore(tmp_path).load("scores", "b") is not None


def test_loading_an_artifact_marks_it_used(tmp_path):
    store = filled_cache(tmp_path)
    sidecar = tmp_path / "scores" / "b.sha256"
    os.utime(sidecar, (0, 0))
    store.load("scores", "b")
    assert time.time() - sidecar.stat().st_mtime < 3600


def test_clear_asks_first(runner, tmp_path):
    filled_cache(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    declined = invoke(runner, "cache", "clear", "--cache-dir", tmp_path, input="n\n")
    assert declined.exit_code == 1 and (tmp_path / "scores" / "b.pt").exists()
    cleared = invoke(runner, "cache", "clear", "--cache-dir", tmp_path, "--yes")
    assert cleared.exit_code == 0 and "removed 3 files" in cleared.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # only what the cache made is removed


TINY2 = """
[suite.tiny2]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["margin"]
metrics = ["auroc"]
seeds = [0]
bootstrap = { resamples = 50 }
"""


def test_cache_ls_names_the_suites_and_gc_removes_only_what_no_current_suite_uses(runner, tiny_registry, tmp_path):
    cache = tmp_path / "own-cache"
    registry = tiny_registry(TINY2)
    for suite in ("tiny", "tiny2"):
        result = invoke(
            runner,
            "run",
            suite,
            "--registry",
            registry,
            "--cache-dir",
            cache,
            "--device",
            "cpu",
            "--out",
            tmp_path / suite,
        )
        assert result.exit_code == 0, result.output
    listed = json.loads(invoke(runner, "cache", "ls", "--cache-dir", cache, "--json").stdout)
    suites = {row["stage"]: set() for row in listed}
    for row in listed:
        suites[row["stage"]] |= {name.split("@")[0] for name in row["suites"]}
    assert suites["classifier"] == {"tiny", "tiny2"}  # one classifier serves both suites
    scores = {row["path"]: {name.split("@")[0] for name in row["suites"]} for row in listed if row["stage"] == "scores"}
    assert sorted(map(sorted, scores.values())) == [["tiny"], ["tiny"], ["tiny2"]]  # msp, entropy; margin
    table = invoke(runner, "cache", "ls", "--cache-dir", cache).stdout
    assert "tiny@" in table and "tiny2@" in table

    registry = tiny_registry()  # tiny2 is gone from the registry
    before = sorted(p for p in cache.rglob("*") if p.is_file())
    dry = invoke(runner, "cache", "gc", "--unreachable", "--registry", registry, "--cache-dir", cache)
    assert dry.exit_code == 0, dry.output
    margin = next(path for path, users in scores.items() if users == {"tiny2"})
    assert f"would remove {margin}" in dry.stdout and "add --yes" in dry.stdout
    assert not any(f"would remove {p}" in dry.stdout for p, users in scores.items() if "tiny" in users)
    assert f"{cache / 'classifier'}" not in dry.stdout  # tiny still uses it (only tiny2's use marker goes)
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == before  # a dry run by default

    done = invoke(runner, "cache", "gc", "--unreachable", "--yes", "--registry", registry, "--cache-dir", cache)
    assert done.exit_code == 0, done.output
    remaining = {
        row["path"] for row in json.loads(invoke(runner, "cache", "ls", "--cache-dir", cache, "--json").stdout)
    }
    assert margin not in remaining and set(scores) - {margin} <= remaining
    assert not (
        cache / "uses" / next(iter({n for row in listed for n in row["suites"] if n.startswith("tiny2@")}))
    ).exists()
    assert invoke(runner, "cache", "verify", "--cache-dir", cache).exit_code == 0
