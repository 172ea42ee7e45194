"""run.json says where every component came from: a third-party scorer's
distribution and version included, so a number traces to the code behind it."""

import json

from probebench.cli import app
from tests.plugin_tools import activate, fake_distribution, forget_modules

GAP_SCORER = """
from probebench.hookspecs import hookimpl

class Gap:
    name = "gap"
    version = "3"

    def score(self, ctx, batch):
        top = batch.logits.topk(2, dim=1).values
        return top[:, 0] - top[:, 1]

@hookimpl
def register_scorers():
    return [Gap]
"""


def test_run_json_records_each_components_distribution_and_version(runner, tiny_registry, tmp_path, monkeypatch):
    site = fake_distribution(
        tmp_path / "site", "probebench-gap", "2.5.1", {"gap": "gap_scorer_mod"}, {"gap_scorer_mod": GAP_SCORER}
    )
    activate(monkeypatch, site)
    try:
        registry = tiny_registry(scorers='["msp", "gap"]')
        out = tmp_path / "run"
        result = runner.invoke(app, ["run", "tiny", "--registry", str(registry), "--out", str(out), "--device", "cpu"])
        assert result.exit_code == 0, result.output
    finally:
        forget_modules("gap_scorer_mod")
    head = json.loads((out / "run.json").read_text())
    components = {(c["kind"], c["name"]): c for c in head["components"]}
    assert components[("scorer", "gap")] == {
        "kind": "scorer",
        "name": "gap",
        "plugin": "gap",
        "distribution": "probebench-gap",
        "distribution_version": "2.5.1",
        "version": "3",
    }
    from importlib.metadata import version

    builtin = components[("scorer", "msp")]
    assert builtin["distribution"] == "probebench" and builtin["distribution_version"] == version("probebench")
    assert {("dataset", "mnist-5k"), ("classifier", "cnn"), ("metric", "auroc")} <= set(components)
    plugins = {p["distribution"]: p for p in head["plugins"]}
    assert plugins["probebench-gap"]["version"] == "2.5.1" and plugins["probebench-gap"]["registers"] == {
        "scorer": ["gap"]
    }
