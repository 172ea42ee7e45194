"""`probebench run A B --seeds 0-1`: several suites as one graph of tasks,
each suite still in its own run folder with its own failures and exit code,
the same bytes as running each alone."""

from __future__ import annotations

import json
from pathlib import Path

from probebench.cli import app

WALL_CLOCK = (",images-per-second,", ",train-seconds,")  # measured, not computed: they differ between runs

SUITES = """
[suite.tiny-b]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["entropy"]
metrics = ["accuracy", "auroc"]
corruptions = [{ name = "cure-noise", severities = [3] }]
seeds = [0]
bootstrap = { resamples = 20 }

[suite.tiny-broken]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp", "raises"]
metrics = ["accuracy", "auroc"]
seeds = [0]
bootstrap = { resamples = 20 }
"""


def computed(run: Path) -> str:
    lines = (run / "results.csv").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not any(metric in line for metric in WALL_CLOCK))


def invoke(runner, registry: Path, *args: str):
    return runner.invoke(app, ["--allow-module", "tests.ray_plugins", "run", *args, "--registry", str(registry)])


def test_several_suites_and_seeds_run_as_one_graph_each_into_its_own_folder(runner, tiny_registry, tmp_path):
    registry = tiny_registry(SUITES)
    text = registry.read_text().replace("builtin = [", 'builtin = ["tests.ray_plugins", ', 1)
    registry.write_text(text)
    result = invoke(runner, registry, "tiny", "tiny-b", "tiny-broken", "--seeds", "0-1", "--out", str(tmp_path / "all"))
    assert result.exit_code == 1, result.output  # tiny-broken's scorer failed its cells; the others are complete
    runs = {name: tmp_path / "all" / name for name in ("tiny", "tiny-b", "tiny-broken")}
    status = {name: json.loads((run / "run.json").read_text()) for name, run in runs.items()}
    assert {name: head["status"] for name, head in status.items()} == {
        "tiny": "finished",
        "tiny-b": "finished",
        "tiny-broken": "failed",
    }
    assert all(head["suite"]["seeds"] == [0, 1] for head in status.values())
    assert {f["plugin"] for f in status["tiny-broken"]["failures"]} == {"raises"}
    assert status["tiny"]["failures"] == status["tiny-b"]["failures"] == []
    # each suite alone (from the same, now warm, cache) gives the same bytes
    for name in ("tiny", "tiny-b"):
        alone = invoke(runner, registry, name, "--seeds", "0-1", "--out", str(tmp_path / f"{name}-alone"))
        assert alone.exit_code == 0, alone.output
        assert computed(tmp_path / f"{name}-alone") == computed(runs[name])
        assert (tmp_path / f"{name}-alone" / "scores.csv.gz").read_bytes() == (
            runs[name] / "scores.csv.gz"
        ).read_bytes()
    seeds = {line.split(",")[5] for line in computed(runs["tiny-b"]).splitlines()[1:]}
    assert seeds == {"0", "1"}


def test_a_bad_suite_name_among_several_is_one_line_before_anything_runs(runner, tiny_registry, tmp_path):
    registry = tiny_registry(SUITES)
    result = invoke(runner, registry, "tiny", "tiny-c", "--out", str(tmp_path / "all"))
    assert result.exit_code == 2, result.output
    assert "tiny-c" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "all").exists()


def test_a_suite_named_twice_is_one_line(runner, tiny_registry):
    result = invoke(runner, tiny_registry(), "tiny", "tiny")
    assert result.exit_code == 2 and "a suite is named twice" in result.output


def test_the_python_api_runs_a_list_of_suites_into_one_folder_each(tiny_registry, tmp_path):
    import probebench

    registry = tiny_registry(SUITES)
    runs = probebench.run(["tiny", "tiny-b"], registry=registry, device="cpu", out=tmp_path / "both")
    assert [r.path for r in runs] == [tmp_path / "both" / "tiny", tmp_path / "both" / "tiny-b"]
    assert [r.meta["suite"]["name"] for r in runs] == ["tiny", "tiny-b"]
    assert set(runs[1].results["corruption"]) == {"none", "cure-noise"}
