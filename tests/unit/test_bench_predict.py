"""bench.predict's cold-load baseline: skops' load as the first load of a fresh process, and
the goal judged on the cold loads paired with it (the load in the benchmark's own process is
printed, not judged)."""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from bench.predict import Model, figures, skops_fresh
from zootrain.ml import modelfile


def test_skops_fresh_loads_the_file_in_a_process_of_its_own(tmp_path: Path) -> None:
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    path = tmp_path / "forest.skops"
    path.write_bytes(modelfile.dumps(model))
    wall, cpu = skops_fresh(path)
    assert wall > 0 and cpu > 0


def test_the_cold_load_goal_is_judged_against_the_fresh_process_load() -> None:
    models = [Model("small", None, b"s" * 10), Model("big", None, b"b" * 100)]
    baseline = {(m.name, rows): [0.001] for m in models for rows in (1, 1000)}
    found = {
        ("batched", m.name, rows, clients): [(0.002, 0.003, 500.0)]
        for m in models
        for rows in (1, 1000)
        for clients in (1, 64)
    }
    cold = [0.36, 0.37, 0.38]
    fresh = [0.32, 0.32, 0.32]  # 1.125x-1.19x: met
    in_bench = [0.18, 0.18, 0.18]  # a warm long-lived process: 2x, would not be
    out = figures(found, baseline, cold, fresh, [0.3] * 3, models, "cmd", 1, None, in_bench)
    (ratio,) = [f for f in out if f.name.endswith("per pair / skops")]
    assert ratio.met is True
    assert abs(ratio.value - 0.37 / 0.32) < 1e-9
    (load,) = [f for f in out if f.name.endswith("after a restart")]
    assert load.baseline == 0.32 and "fresh process" in load.baseline_name
    assert "0.180" in load.note  # the in-process load, printed
