"""The bench's measurement and its controller bound: GNU time's figures read back for real, and the
bound computed from a results table (no lab)."""

import sys

import bench.__main__ as bench


def test_timed_tells_the_controllers_cpu_from_its_wall_time():
    busy = bench.timed([sys.executable, "-c", "import time\nend = time.process_time() + 0.4\n"
                                              "while time.process_time() < end: pass"])
    idle = bench.timed([sys.executable, "-c", "import time; time.sleep(0.4)"])
    assert busy.cpu_s >= 0.35
    assert busy.seconds >= busy.cpu_s - 0.02  # one thread: never more CPU than wall
    assert idle.seconds >= 0.4
    assert idle.cpu_s < 0.3  # the sleep is wall time only (the interpreter's start is the CPU)
    assert busy.max_rss_mb > 1


def fleet(clients: int, floor_cpu: float, noop_cpu: float) -> dict:
    return {"clients": clients, "floor": {"median_s": 9.0, "min_s": 9.0, "max_s": 9.0, "runs": 1, "max_rss_mb": 60,
                                          "cpu_median_s": floor_cpu},
            "noop": {"median_s": 9.5, "min_s": 9.5, "max_s": 9.5, "runs": 1, "max_rss_mb": 64,
                     "cpu_median_s": noop_cpu},
            "noop_over_floor": {"median": 1.06, "min": 1.06, "max": 1.06}, "lab_memory_mb": 1024}


def scaling(small_noop: float) -> dict:
    run = {"median_s": small_noop, "min_s": small_noop, "max_s": small_noop, "runs": 1, "max_rss_mb": 60}
    return {"small": 2, "large": 64, "noop_small": run, "noop_large": dict(run, median_s=2.0),
            "large_over_small": {"median": 3.7, "min": 3.7, "max": 3.7}}


def test_the_bound_is_the_large_fleets_cpu_over_the_small_fleets_noop():
    results = {"fleets": [fleet(2, 0.38, 0.42), fleet(64, 0.73, 0.92)], "scaling": scaling(0.5)}
    bound = bench.controller_bound(results)
    assert bound == {"noop_cpu_s": 0.92, "floor_cpu_s": 0.73, "small_noop_s": 0.5, "noop_over_small": 1.84,
                     "floor_over_small": 1.46}
    results["scaling"]["controller_bound"] = bound
    text = bench.table(results)
    assert "| 1+64 | 9.00 s (9.00–9.00) | 9.50 s (9.50–9.50) | 1.06× | 0.73 s / 0.92 s |" in text
    assert "the no-op needs 0.92 s of it, 1.84× the no-op of 1+2 (0.50 s), and the floor alone 0.73 s, 1.46×" in text
