"""A broken third-party plugin stops the CLI at start-up with one line that
names the distribution that brought it, and exit code 2."""

from __future__ import annotations

import pytest

from probebench.cli import app
from tests.plugin_tools import activate, fake_distribution, forget_modules

GOOD_SCORER = """
from probebench.hookspecs import hookimpl

class Gap:
    name = "{name}"

    def score(self, ctx, batch):
        return batch.logits.max(1).values
"""

CASES = {
    "import-fails": (
        "import numpyy_not_installed\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0 failed to import: "
        "ModuleNotFoundError: No module named 'numpyy_not_installed'; fix or uninstall probebench-broken, "
        "or skip it with --disable-plugin broken",
    ),
    "syntax-error": (
        "def register_scorers(:\n    pass\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0 failed to import: SyntaxError:",
    ),
    "missing-method": (
        GOOD_SCORER.replace("def score", "def scores").format(name="gap")
        + "\n@hookimpl\ndef register_scorers():\n    return [Gap]\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0: scorer class Gap has no 'score'",
    ),
    "duplicate-of-a-builtin": (
        GOOD_SCORER.format(name="msp") + "\n@hookimpl\ndef register_scorers():\n    return [Gap]\n",
        "scorer 'msp' is registered twice: by plugin 'probebench.plugins.scorers.softmax' (probebench) and by plugin "
        "'broken' (probebench-broken); disable one with --disable-plugin",
    ),
    "misspelt-hook": (
        GOOD_SCORER.format(name="gap") + "\n@hookimpl\ndef register_scorer():\n    return [Gap]\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0 implements an unknown hook "
        "'register_scorer' (did you mean 'register_scorers'?)",
    ),
    "misspelt-hook-without-marker": (
        GOOD_SCORER.format(name="gap") + "\ndef register_scorer():\n    return [Gap]\n",
        "implements an unknown hook 'register_scorer' (did you mean 'register_scorers'?)",
    ),
    "hook-without-marker": (
        GOOD_SCORER.format(name="gap") + "\ndef register_scorers():\n    return [Gap]\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0 defines register_scorers() without "
        "@hookimpl, so pluggy would not call it; define it with @hookimpl (from probebench.hookspecs import hookimpl)",
    ),
    "hook-with-arguments": (
        GOOD_SCORER.format(name="gap") + "\n@hookimpl\ndef register_scorers(config):\n    return [Gap]\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0 cannot register: "
        "PluginValidationError: Plugin 'broken' for hook 'register_scorers' hookimpl definition: "
        "register_scorers(config) Argument(s) {'config'} are declared in the hookimpl",
    ),
    "returns-instances": (
        GOOD_SCORER.format(name="gap") + "\n@hookimpl\ndef register_scorers():\n    return [Gap()]\n",
        "register_scorers() must return classes, not Gap objects; return [Gap] instead of [Gap()]",
    ),
    "returns-one-class": (
        GOOD_SCORER.format(name="gap") + "\n@hookimpl\ndef register_scorers():\n    return Gap\n",
        "register_scorers() must return a list of classes, got the class Gap; return [Gap]",
    ),
    "hook-raises": (
        "from probebench.hookspecs import hookimpl\n\n@hookimpl\ndef register_metrics():\n"
        "    raise RuntimeError('no GPU\\nfound')\n",
        "plugin 'broken' (broken_mod) from distribution probebench-broken 0.3.0: register_metrics() raised "
        "RuntimeError: no GPU found; fix or uninstall probebench-broken",
    ),
    "bad-name": (
        GOOD_SCORER.format(name="my gap") + "\n@hookimpl\ndef register_scorers():\n    return [Gap]\n",
        "scorer class Gap has name 'my gap'; a name is a non-empty kebab-case string",
    ),
}


@pytest.fixture
def broken(monkeypatch, tmp_path):
    def install(code: str) -> None:
        site = fake_distribution(
            tmp_path / "site", "probebench-broken", "0.3.0", {"broken": "broken_mod"}, {"broken_mod": code}
        )
        activate(monkeypatch, site)

    yield install
    forget_modules("broken_mod")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", [["ls"], ["plugins", "--json"]])
def test_broken_plugin_is_one_line_naming_its_distribution(runner, broken, case, command):
    code, message = CASES[case]
    broken(code)
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", sorted(CASES))
def test_disabling_the_broken_plugin_lets_every_command_start(runner, broken, case):
    broken(CASES[case][0])
    for args in (["--disable-plugin", "broken"], ["--disable-plugin", "probebench-broken"]):
        result = runner.invoke(app, [*args, "ls", "scorers"])
        assert result.exit_code == 0, result.output
        assert "msp" in result.output


def test_autoload_off_never_imports_it(runner, broken, monkeypatch):
    broken(CASES["import-fails"][0])
    monkeypatch.setenv("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert runner.invoke(app, ["ls"]).exit_code == 0


def test_debug_shows_the_traceback(runner, broken):
    broken(CASES["import-fails"][0])
    result = runner.invoke(app, ["--debug", "ls"])
    assert result.exit_code != 0 and result.exception is not None


def test_two_distributions_registering_one_name_are_both_named(runner, monkeypatch, tmp_path):
    site = tmp_path / "site"
    for dist, module in (("probebench-first", "first_mod"), ("probebench-second", "second_mod")):
        fake_distribution(
            site,
            dist,
            "1.0",
            {module.removesuffix("_mod"): module},
            {module: GOOD_SCORER.format(name="gap") + "\n@hookimpl\ndef register_scorers():\n    return [Gap]\n"},
        )
    activate(monkeypatch, site)
    try:
        result = runner.invoke(app, ["ls"])
        assert result.exit_code == 2
        assert "scorer 'gap' is registered twice" in result.output
        assert "(probebench-first)" in result.output and "(probebench-second)" in result.output
        result = runner.invoke(app, ["--disable-plugin", "second", "ls", "scorers"])
        assert result.exit_code == 0 and "probebench-first" in result.output
    finally:
        forget_modules("first_mod", "second_mod")
