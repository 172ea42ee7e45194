"""Run folders that cannot lie (issue 17 points 3, 4, 8, 11): unique, complete
when visible, with a status; path parts from user input stay inside results/
or --out; CSV cells are not formulas; files follow the umask."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from probebench.cli import app
from probebench.paths import new_run_folder, safe_part

FIXED = datetime(2026, 12, 1, 12, 0, 0)


def invoke(runner, *args):
    return runner.invoke(app, list(map(str, args)))


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


@pytest.fixture
def same_second(monkeypatch):
    """Every run id is made at the same instant, as runs started in the same second."""
    import probebench.paths as paths

    real = paths.run_id
    monkeypatch.setattr(paths, "run_id", lambda name, clock=None: real(name, FIXED))


def test_three_runs_in_the_same_second_get_three_folders(runner, tiny_registry, tmp_path, same_second):
    registry = tiny_registry()
    printed = []
    for seed in (0, 1, 2):
        result = invoke(runner, "run", "tiny", "--registry", registry, "--seeds", seed, "--device", "cpu")
        assert result.exit_code == 0, result.output
        printed.append(" ".join(result.output.split()).split("results: ")[1].split()[0])
    assert visible(tmp_path / "results") == ["tiny-20261201-120000", "tiny-20261201-120000-2", "tiny-20261201-120000-3"]
    for seed, path in zip((0, 1, 2), printed):  # the printed path is where that run really is
        assert pd.read_csv(Path(path) / "results.csv")["seed"].unique().tolist() == [seed]
        assert json.loads((Path(path) / "run.json").read_text())["status"] == "finished"
    assert not [p for p in (tmp_path / "results").iterdir() if p.name.startswith(".")]  # no partial left


def test_concurrent_claims_never_share_a_folder(tmp_path):
    claimed: list[Path] = []

    def claim() -> None:
        claimed.append(new_run_folder(tmp_path, "s", FIXED).partial)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8 and all(p.is_dir() for p in claimed)


INTERRUPTED_RUN = """
import sys
import probebench.pipeline.run as pipeline

def stop(*args, **kwargs):
    raise KeyboardInterrupt  # Ctrl-C while the first seed runs

pipeline.build_graph = stop
from probebench.cli import main

sys.argv = ["probebench", *sys.argv[1:]]
main()
"""


def test_an_interrupted_run_stays_partial_with_its_status(tiny_registry, tmp_path):
    import subprocess
    import sys

    # a subprocess: the CLI ends an interrupted process with os._exit, as Ctrl-C should
    args = [sys.executable, "-c", INTERRUPTED_RUN, "run", "tiny", "--registry", str(tiny_registry()), "--device", "cpu"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr
    root = tmp_path / "results"
    assert visible(root) == []  # nothing that looks like a run
    (partial,) = root.iterdir()
    assert partial.name.endswith(".partial")
    assert json.loads((partial / "run.json").read_text())["status"] == "interrupted"
    assert partial.name in " ".join(result.stderr.split())


def test_an_existing_out_is_refused_and_overwrite_replaces_it_whole(runner, tiny_registry, tmp_path):
    registry, out = tiny_registry(), tmp_path / "out"
    out.mkdir()
    (out / "old-grid.png").write_bytes(b"an earlier run's image")
    result = invoke(runner, "run", "tiny", "--registry", registry, "--out", out, "--device", "cpu")
    assert result.exit_code == 2 and "--overwrite" in result.output and "Traceback" not in result.output
    assert (out / "old-grid.png").exists() and not (out / "results.csv").exists()  # nothing lost, nothing mixed

    result = invoke(runner, "run", "tiny", "--registry", registry, "--out", out, "--overwrite", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert not (out / "old-grid.png").exists()  # the report of this run cannot embed the old image
    assert (out / "results.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_failed_run_is_marked_and_kept_out_of_leaderboards(runner, tiny_registry, tmp_path):
    from tests.fake_runs import make_run

    registry = tiny_registry(scorers='["msp", { name = "prober", source = "train", min_misses = 1000 }]')
    results_dir = tmp_path / "results"
    result = invoke(runner, "run", "tiny", "--registry", registry, "--out", results_dir / "bad", "--device", "cpu")
    assert result.exit_code == 1
    head = json.loads((results_dir / "bad" / "run.json").read_text())
    assert head["status"] == "failed" and head["failures"]
    make_run(results_dir / "good", name="tiny")

    board = invoke(runner, "leaderboard", "--all", "--format", "csv")
    assert board.exit_code == 0, board.output
    assert "skipping run" in board.output and "failed" in board.output
    assert "| bad |" not in board.output and ",bad" not in board.output
    assert invoke(runner, "leaderboard", "bad").exit_code == 2  # named: refused in one line
    assert invoke(runner, "leaderboard", "bad", "--include-failed").exit_code == 0

    refused = invoke(runner, "compare", "good", "bad")
    assert refused.exit_code == 2 and "--include-failed" in refused.output
    compared = invoke(runner, "compare", "good", "bad", "--include-failed", "--tolerance", "1000")
    assert compared.exit_code == 1 and "component failures" in compared.output  # never a clean pass


def test_results_without_run_json_are_skipped_with_a_warning(runner, tmp_path):
    from tests.fake_runs import make_run

    make_run(tmp_path / "results" / "good")
    stray = tmp_path / "results" / "stray"
    stray.mkdir()
    (stray / "results.csv").write_bytes((tmp_path / "results" / "good" / "results.csv").read_bytes())
    result = invoke(runner, "leaderboard", "--all")
    assert result.exit_code == 0, result.output
    assert "skipping" in result.output and "stray" in result.output and "run.json" in result.output


def test_path_parts_from_user_input_stay_inside(runner, tiny_registry, tmp_path, monkeypatch):
    """A suite named ../../x and a generator labelled ../../../x write only under results/."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    os.chdir(work)
    monkeypatch.setenv("PROBEBENCH_RESULTS", str(work / "results"))  # the results dir, however it is found
    registry = tiny_registry(
        """
        [suite."../../x"]
        dataset = { name = "mnist-5k", limit = 64 }
        classifier = { name = "cnn", epochs = 1, width = 8 }
        scorers = ["msp"]
        metrics = ["accuracy", "auroc"]
        generators = [{ name = "realnvp", levels = 1, blocks = 1, hidden = 8, epochs = 1, warmup = 0, label = "../../../x" }]
        bootstrap = { resamples = 20 }
        """
    )
    before = {p for p in tmp_path.rglob("*")}
    result = invoke(runner, "run", "../../x", "--registry", registry, "--device", "cpu")
    assert result.exit_code == 0, result.output
    created = {p for p in tmp_path.rglob("*")} - before
    results = work / "results"
    assert created and all(p == results or results in p.parents for p in created), sorted(map(str, created))
    (run,) = results.iterdir()
    assert run.name.startswith("___.._x-")
    assert {p.name for p in run.glob("*.png")} == {f"___.._.._x-seed0-{k}.png" for k in ("samples", "reconstructions")}


@pytest.mark.parametrize(
    ("text", "part"),
    [("mnist-quick", "mnist-quick"), ("../../x", "___.._x"), ("..", "__"), ("a/b\\c", "a_b_c"), ("", "_")],
)
def test_safe_part(text, part):
    assert safe_part(text) == part


def test_formula_labels_are_escaped_in_every_csv_and_files_follow_the_umask(runner, tiny_registry, tmp_path):
    registry = tiny_registry(scorers='[{ name = "msp", label = "=HYPERLINK(\\"http://x\\")" }]')
    old = os.umask(0o022)
    try:
        result = invoke(runner, "run", "tiny", "--registry", registry, "--out", tmp_path / "run", "--device", "cpu")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for name in ("results.csv", "scores.csv.gz", "replicates.npz", "run.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o644, name
    raw = pd.read_csv(run / "results.csv", keep_default_na=False)
    assert '\'=HYPERLINK("http://x")' in set(raw["method"]) and "-" in set(raw["method"])
    assert '\'=HYPERLINK("http://x")' in pd.read_csv(run / "scores.csv.gz").columns
    assert not any(str(v).startswith("=") for v in raw["method"])
    board = invoke(runner, "leaderboard", run, "--format", "csv")
    assert board.exit_code == 0, board.output
    assert "'=HYPERLINK" in board.output and "\n=HYPERLINK" not in board.output
    shown = invoke(runner, "leaderboard", run, "--format", "markdown")
    assert '=HYPERLINK("http://x")' in shown.output and "'=HYPERLINK" not in shown.output  # read back as written


def test_a_resumed_run_removes_the_partial_folders_of_its_stopped_attempts(runner, tiny_registry, tmp_path):
    import subprocess
    import sys

    registry = tiny_registry()
    args = [sys.executable, "-c", INTERRUPTED_RUN, "run", "tiny", "--registry", str(registry), "--device", "cpu"]
    assert subprocess.run(args, capture_output=True, text=True, timeout=300).returncode == 130
    root = tmp_path / "results"
    (interrupted,) = root.iterdir()
    running = root / ".tiny-20260101-000000.partial"  # another process still writing this suite: not ours to remove
    running.mkdir()
    (running / "run.json").write_text(json.dumps({"status": "running"}))
    other = root / ".tiny2-20260101-000000.partial"  # another suite's interrupted run
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"status": "interrupted"}))

    result = invoke(runner, "run", "tiny", "--registry", registry, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert not interrupted.exists() and f"removed {interrupted}" in " ".join(result.stderr.split())
    assert running.exists() and other.exists()
    assert len(visible(root)) == 1  # the finished run
