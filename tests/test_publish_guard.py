"""``probebench publish`` never silently shrinks the published leaderboard (issue 17 point 5)."""

from __future__ import annotations

import shutil

from probebench.cli import app
from tests.fake_runs import make_run

SECOND_SUITE = """
[suite.tiny2]
dataset = { name = "mnist-5k", limit = 300 }
classifier = { name = "cnn", epochs = 1, width = 8 }
scorers = ["msp"]
metrics = ["accuracy", "auroc"]
seeds = [0]
"""


def invoke(runner, *args):
    result = runner.invoke(app, list(map(str, args)))
    return result.exit_code, result.output


def published(runner, tiny_registry, tmp_path):
    """results/ with 3-seed runs of two suites, and the leaderboard published from them."""
    from probebench.suite import load_config, parse_suite

    registry = tiny_registry(SECOND_SUITE)
    root = tmp_path / "results"
    for name in ("tiny", "tiny2"):
        current = parse_suite(load_config(registry), name).as_dict()
        make_run(root / f"{name}-run", suite={**current, "seeds": [0, 1, 2]}, seeds=(0, 1, 2), n=120)
    out = tmp_path / "LEADERBOARD.md"
    args = ["--registry", registry, "--results-dir", root, "--out", out]
    code, text = invoke(runner, "publish", "--suite", "tiny,tiny2", *args)
    assert code == 0, text
    return registry, root, out, args


def test_the_header_lists_the_commands_that_reproduce_each_section(runner, tiny_registry, tmp_path):
    _, _, out, _ = published(runner, tiny_registry, tmp_path)
    page = out.read_text()
    assert "probebench run tiny --seeds 0,1,2\nprobebench run tiny2 --seeds 0,1,2\n" in page
    assert "probebench publish --suite tiny --suite tiny2" in page


def test_dropping_a_suite_or_seeds_needs_force(runner, tiny_registry, tmp_path):
    registry, root, out, args = published(runner, tiny_registry, tmp_path)
    before = out.read_text()
    from probebench.suite import load_config, parse_suite

    # this checkout has only a 1-seed run of one suite
    shutil.rmtree(root)
    current = parse_suite(load_config(registry), "tiny").as_dict()
    make_run(root / "tiny-one-seed", suite={**current, "seeds": [0]}, seeds=(0,), n=120)

    code, text = invoke(runner, "publish", "--suite", "tiny", *args)
    assert code == 2 and "Traceback" not in text
    message = " ".join(text.split())
    assert "drops suite 'tiny2'" in message and "--force" in message
    assert "tiny-run" in message and "tiny2-run" in message  # the runs behind the published file missing here
    assert out.read_text() == before  # nothing lost

    code, text = invoke(runner, "publish", "--suite", "tiny,tiny2", *args)
    assert code == 2 and "no run of suite 'tiny2'" in text and out.read_text() == before

    code, text = invoke(runner, "publish", "--suite", "tiny", "--dry-run", *args)
    assert code == 0 and "-## tiny2" in text and "-probebench run tiny --seeds 0,1,2" in text
    assert "+probebench run tiny --seeds 0" in text and "would refuse" in text
    assert out.read_text() == before

    code, text = invoke(runner, "publish", "--suite", "tiny", "--force", *args)
    assert code == 0, text
    assert "## tiny2" not in out.read_text() and "probebench run tiny --seeds 0\n" in out.read_text()


def test_fewer_seeds_of_a_kept_suite_need_force(runner, tiny_registry, tmp_path):
    registry, root, out, args = published(runner, tiny_registry, tmp_path)
    before = out.read_text()
    from probebench.suite import load_config, parse_suite

    shutil.rmtree(root / "tiny-run")
    current = parse_suite(load_config(registry), "tiny").as_dict()
    make_run(root / "tiny-seed0", suite={**current, "seeds": [0]}, seeds=(0,), n=120)
    code, text = invoke(runner, "publish", "--suite", "tiny,tiny2", *args)
    assert code == 2 and "loses seed(s) 1, 2 of 'tiny'" in " ".join(text.split())
    assert out.read_text() == before
