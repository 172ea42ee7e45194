"""Where every component of a run came from, for its run.json.

A number is reproducible only if one knows which code produced it: for each
component a suite uses, the plugin that registered it, that plugin's
distribution and version (a third-party package's own), and the component's
own ``version``; and every plugin that was loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probebench.registry import Registry

# suite key -> the kind of the components it names
SUITE_KINDS = {
    "dataset": "dataset",
    "classifier": "classifier",
    "scorers": "scorer",
    "generators": "generator",
    "correctors": "corrector",
    "corruptions": "corruption",
    "metrics": "metric",
}


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return [item["name"] if isinstance(item, dict) else str(item) for item in items if item]


def plugin_provenance(suite_dict: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """``{"components": [...], "plugins": [...]}``: one entry per component
    the suite names (kind, name, plugin, distribution, distribution_version,
    version) and every loaded plugin (``PluginInfo.as_dict``)."""
    components = []
    for key, kind in SUITE_KINDS.items():
        for name in dict.fromkeys(_names(suite_dict.get(key))):
            entry = registry.entry(kind, name)
            components.append(
                {
                    "kind": kind,
                    "name": entry.name,
                    "plugin": entry.plugin.name,
                    "distribution": entry.plugin.distribution,
                    "distribution_version": entry.plugin.version,
                    "version": str(getattr(entry.cls, "version", "1")),
                }
            )
    return {"components": components, "plugins": [p.as_dict() for p in registry.plugins.values()]}
