"""probebench core: plugin manager, suites, pipeline, results. Names no concrete method."""

__version__ = "0.1.0"
