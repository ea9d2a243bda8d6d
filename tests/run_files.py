"""Hand-made run directories for tests that read runs without training them."""

import json
from pathlib import Path

from repsim.rundir import METRICS_FILE


def metrics_dict(**values) -> dict:
    """A complete ``metrics.json`` object: ``values`` over plausible defaults."""
    fusion_layer, layers, seed = (values.get(key, default) for key, default in
                                  (("fusion_layer", 1), ("layers", 2), ("seed", 0)))
    dataset = values.get("dataset", "synthetic")
    defaults = {
        "run": f"{dataset}-f{fusion_layer}-s{seed}", "dataset": dataset,
        "fusion_layer": fusion_layer, "layers": layers, "seed": seed, "parameters": 1000,
        "branch_hidden": None, "clean_accuracy": 0.9,
        "noise": [{"noise": "audio", "snr_db": 0.0, "accuracy": 0.5}],
        "removed": {"audio": 0.2, "visual": 0.4}, "val_accuracy": 0.9, "epochs": 1,
        "train_seconds": 1.0,
        "config": {"model": {"fusion_layer": fusion_layer, "layers": layers}, "seed": seed},
        "versions": {}}
    return {**defaults, **values}


def write_metrics_file(run_dir: Path, **values) -> Path:
    """``run_dir/metrics.json`` from :func:`metrics_dict` (the directory is created)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / METRICS_FILE
    path.write_text(json.dumps(metrics_dict(**values)))
    return path
