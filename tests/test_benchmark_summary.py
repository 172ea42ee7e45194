"""tests/benchmarks/summary.py lists the tracked ratios and peak memory of a benchmark run."""

from tests.benchmarks.summary import summary


def test_summary_lists_ratios_and_peak_memory():
    report = {
        "benchmarks": [
            {
                "fullname": "tests/benchmarks/test_run_memory.py::test_cold_run_peak_memory[mnist-cure]",
                "stats": {"median": 61.5},
                "extra_info": {"suite": "mnist-cure", "cold_run_s": 61.5, "peak_rss_mib": 812.25},
            },
            {
                "fullname": "tests/benchmarks/test_x.py::test_y",
                "stats": {"median": 0.5},
                "extra_info": {"ratio_vs_forward": 1.02, "forward_s": 0.4},
            },
        ]
    }
    first, second = summary(report)
    assert "test_cold_run_peak_memory[mnist-cure]" in first and "peak_rss_mib 812" in first
    assert "cold_run_s" not in first and "suite" not in first
    assert "ratio_vs_forward 1.02" in second and "forward_s" not in second
