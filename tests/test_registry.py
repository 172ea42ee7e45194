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


class Gap:
    name = "gap"

    def score(self, ctx, batch):
        return batch.logits.max(1).values


def test_hooks_are_called_through_pluggy():
    """pluggy's hook-call machinery runs (here its call monitoring sees the
    call), and the plugin's hooks are read from get_hookimpls()."""
    reg = Registry([])
    calls = []
    reg.pm.add_hookcall_monitoring(
        lambda hook, impls, kwargs: calls.append((hook, [impl.plugin_name for impl in impls])),
        lambda outcome, hook, impls, kwargs: None,
    )
    reg.add_plugin(sys.modules[fake_module("tests_fake_traced", [Gap])])
    assert calls == [("register_scorers", ["tests_fake_traced"])]
    assert reg.plugins["tests_fake_traced"].hooks == ["register_scorers"]
    assert reg.get("scorer", "gap") is Gap


def test_a_hook_function_without_hookimpl_is_an_error():
    module = types.ModuleType("tests_fake_unmarked")

    def register_scorers():
        return [Gap]

    module.register_scorers = register_scorers
    with pytest.raises(PluginError) as caught:
        Registry([]).add_plugin(module)
    assert str(caught.value) == (
        "in-process plugin 'tests_fake_unmarked' defines register_scorers() without @hookimpl, so pluggy would "
        "not call it; define it with @hookimpl (from probebench.hookspecs import hookimpl)"
    )


def test_two_implementations_of_one_hook_in_one_plugin_both_register():
    """pluggy's specname lets one plugin implement a hook twice; each result is indexed."""

    class Other(Gap):
        name = "other-gap"

    module = types.ModuleType("tests_fake_twice")
    module.register_scorers = hookimpl(lambda: [Gap])
    module.more_scorers = hookimpl(specname="register_scorers")(lambda: [Other])
    reg = Registry([])
    reg.add_plugin(module)
    assert reg.names("scorer") == ["gap", "other-gap"]
    assert sorted(reg.plugins["tests_fake_twice"].components["scorer"]) == ["gap", "other-gap"]


def test_an_implementation_only_under_another_name_is_an_error():
    module = types.ModuleType("tests_fake_specname")
    module.my_scorers = hookimpl(specname="register_scorers")(lambda: [Gap])
    with pytest.raises(
        PluginError, match=r"implements register_scorers as <lambda>\(\) \(specname\); name the function"
    ):
        Registry([]).add_plugin(module)
