"""Turning result tables into what a person reads.

``tables``       render pivots: rich, markdown, CSV, HTML, LaTeX
``leaderboard``  filter and pivot (combined) runs into sections, honestly
``compare``      per-cell deltas between two runs, regressions
``curves``       ROC, risk-coverage, accuracy-vs-percentile, reliability (numpy)
``plots``        matplotlib figures of those curves and heatmaps
``html``         the self-contained HTML report of a run
"""
