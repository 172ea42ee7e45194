"""The plugin author's guide documents every hook and kind, and its examples run
(after datasette's tests/test_docs.py, which holds its docs to its hooks)."""

from __future__ import annotations

import inspect
import re

import pytest

from probebench import hookspecs
from probebench.kinds import CAPABILITIES, KINDS, REQUIRED
from tests.conftest import REPO

GUIDE = REPO / "docs" / "plugins.md"


def sections(text: str, title: str) -> dict[str, str]:
    """``### heading -> body`` for the level-3 headings under ``## title``."""
    part = re.split(r"^## ", text, flags=re.M)
    body = next(p for p in part if p.startswith(title + "\n"))
    pieces = re.split(r"^### (.+)$", body, flags=re.M)
    return {heading.strip(): content for heading, content in zip(pieces[1::2], pieces[2::2])}


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block whose info string is ``python runnable``."""
    blocks = []
    for match in re.finditer(r"^```python runnable\n(.*?)^```$", text, flags=re.M | re.S):
        blocks.append((text[: match.start()].count("\n") + 1, match.group(1)))
    return blocks


def hook_signature(function) -> str:
    signature = inspect.signature(function)
    params = ", ".join(str(p).replace("'", "") for p in signature.parameters.values())
    return f"{function.__name__}({params}) -> {signature.return_annotation}"


HOOKS = {name: fn for name, fn in vars(hookspecs).items() if hasattr(fn, "probebench_spec")}


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


def test_every_hook_is_documented_with_its_signature_and_the_other_way_round(guide):
    documented = set(sections(guide, "Hooks"))
    assert documented == {hook_signature(fn) for fn in HOOKS.values()}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_section_has_a_runnable_example_that_implements_it(guide, hook):
    body = sections(guide, "Hooks")[hook_signature(HOOKS[hook])]
    code = "\n".join(code for _line, code in runnable_blocks(body))
    assert f"@hookimpl\ndef {hook}():" in code, f"the {hook} section needs a runnable example implementing it"
    assert "Called" in body and "Returns" in body, f"the {hook} section must say when it is called and what it returns"


def test_every_kind_is_documented_and_the_other_way_round(guide):
    assert set(sections(guide, "Kinds")) == {protocol.__name__ for protocol in KINDS.values()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_required_attribute_of_a_kind_is_in_its_section(guide, kind):
    body = sections(guide, "Kinds")[KINDS[kind].__name__]
    for attr in REQUIRED[kind]:
        if attr != "name":  # every kind's `name` is described once, in the rules
            assert f"`{attr}" in body, f"{kind}: {attr!r} is required by probebench/kinds.py but not in the guide"


@pytest.mark.parametrize("capability", sorted(CAPABILITIES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_capability_is_documented_in_its_kinds_section(guide, capability):
    kind, attribute = CAPABILITIES[capability]
    body = sections(guide, "Kinds")[KINDS[kind].__name__]
    methods = [name for name in vars(capability) if not name.startswith("_") and callable(vars(capability)[name])]
    for name in (f"probebench.kinds.{capability.__name__}", f"{attribute} = True", *methods):
        assert f"`{name}" in body, f"{capability.__name__}: {name!r} is not in the guide's {kind} section"


def test_the_rules_every_component_follows_are_stated(guide):
    rules = sections_level2(guide)["Rules for every component"]
    for phrase in (
        "Higher = more confident",
        "No hard-coded device",
        "Deterministic given a seed",
        "Keep plugin modules light",
        "float32",
        "option_help",
        "reference",
        "version",
    ):
        assert phrase in rules


def sections_level2(text: str) -> dict[str, str]:
    pieces = re.split(r"^## (.+)$", text, flags=re.M)
    return {heading.strip(): content for heading, content in zip(pieces[1::2], pieces[2::2])}


def test_plugin_switches_are_documented_in_the_guide_and_readme(guide):
    readme = (REPO / "README.md").read_text()
    for text in (guide, readme):
        for switch in ("--disable-plugin", "PROBEBENCH_DISABLE_PLUGIN_AUTOLOAD=1", "new-plugin"):
            assert switch in text
    assert "docs/plugins.md" in readme
    for command in ("probebench plugins --json", "probebench show", "PROBEBENCH_DISABLE_PLUGINS"):
        assert command in guide


def test_guide_has_runnable_examples(guide):
    assert len(runnable_blocks(guide)) >= len(HOOKS)


@pytest.mark.parametrize(
    "line, code", runnable_blocks(GUIDE.read_text()), ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_runnable_example(line, code):
    namespace = {"__name__": f"docs_plugins_md_line_{line}"}
    exec(compile(code, f"{GUIDE}:{line}", "exec"), namespace)


def test_the_architecture_map_names_only_modules_and_folders_that_exist():
    """docs/architecture.md is the contributor's map: every `probebench/...`
    path and `name.py` it shows in code must exist, so the map cannot go stale."""
    text = (REPO / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"probebench/[\w/]*[\w*]+(?:\.py)?", text))
    assert len(paths) > 10
    for path in paths:
        path = path.rstrip("*").rstrip("/")
        assert (REPO / path).exists() or (REPO / f"{path}.py").exists(), f"docs/architecture.md names {path}"
    pipeline = REPO / "probebench" / "pipeline"
    for module in re.findall(r"`(\w+)\.py`", text):
        assert (pipeline / f"{module}.py").exists() or list(REPO.glob(f"probebench/**/{module}.py")), module
    stages = [p.stem for p in pipeline.glob("*.py") if p.stem != "__init__"]
    missing = [s for s in stages if f"{s}.py" not in text]
    assert not missing, f"docs/architecture.md does not place these pipeline modules: {missing}"
