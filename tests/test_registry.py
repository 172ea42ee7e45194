"""Plugin manager: lookup, suggestions, duplicates, disabled autoload."""

import sys
import types

import pytest

from probebench.errors import PluginError, UserError
from probebench.hookspecs import hookimpl
from probebench.registry import Registry
from tests.conftest import builtin_modules


def fake_module(name: str, scorers: list[type]):
    module = types.ModuleType(name)

    @hookimpl
    def register_scorers():
        return scorers

    module.register_scorers = register_scorers
    sys.modules[name] = module
    return name


class Twin:
    name = "msp"

    def score(self, ctx, batch):
        return batch.probs.max(1).values


def test_builtins_register_every_kind_used_by_the_default_suite():
    reg = Registry(builtin_modules())
    assert reg.names("scorer") == sorted(reg.names("scorer"))
    assert {"msp", "entropy"} <= set(reg.names("scorer"))
    assert "mnist-5k" in reg.names("dataset")
    assert "cnn" in reg.names("classifier")
    assert {"accuracy", "auroc", "aupr-miss", "fpr95"} <= set(reg.names("metric"))


def test_fnmatch_listing():
    reg = Registry(builtin_modules())
    assert reg.names("metric", "aupr*") == [n for n in reg.names("metric") if n.startswith("aupr")]
    assert reg.names("scorer", "zzz*") == []


def test_unknown_name_suggests_closest():
    reg = Registry(builtin_modules())
    with pytest.raises(UserError, match=r"unknown scorer 'mps' \(did you mean 'msp'"):
        reg.get("scorer", "mps")


def test_unknown_kind():
    reg = Registry(builtin_modules())
    with pytest.raises(UserError, match="unknown kind 'scorerz'"):
        reg.names("scorerz")


def test_duplicate_name_names_both_plugins():
    extra = fake_module("tests_fake_twin", [Twin])
    with pytest.raises(
        PluginError, match=r"scorer 'msp' is registered twice.*probebench.plugins.scorers.softmax.*tests_fake_twin"
    ):
        Registry(builtin_modules() + [extra])


def test_class_missing_required_method():
    class NoScore:
        name = "broken"

    extra = fake_module("tests_fake_broken", [NoScore])
    with pytest.raises(PluginError, match="scorer class .*NoScore has no 'score'"):
        Registry(builtin_modules() + [extra])


def test_builtin_module_that_fails_to_import():
    with pytest.raises(PluginError, match="'plugins.nope' .*failed to import"):
        Registry(builtin_modules() + ["plugins.nope"])


def test_disabled_builtin_is_skipped():
    reg = Registry(builtin_modules(), disabled=["probebench.plugins.scorers.softmax"])
    assert "msp" not in reg.names("scorer")


def test_autoload_env_skips_entry_points(monkeypatch):
    calls = []
    monkeypatch.setattr(Registry, "_register_entry_points", lambda self: calls.append(1))
    monkeypatch.setenv("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    Registry(builtin_modules())
    assert calls == []
    monkeypatch.setenv("PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD", "0")
    Registry(builtin_modules())
    assert calls == [1]


def test_options_are_checked():
    reg = Registry(builtin_modules())
    with pytest.raises(UserError, match="classifier 'cnn' has no option 'epoch' \\(did you mean 'epochs'"):
        reg.create("classifier", "cnn", {"epoch": 2})
    with pytest.raises(UserError, match="option 'epochs' must be int"):
        reg.create("classifier", "cnn", {"epochs": "two"})
    assert reg.create("classifier", "cnn", {"epochs": 2}).epochs == 2
