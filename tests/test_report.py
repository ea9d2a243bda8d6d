"""Side-by-side accuracy tables from metrics.json files."""

from __future__ import annotations

import json

import pytest
from run_files import metrics_dict

from repsim.report import accuracy_table, main
from repsim.rundir import Metrics, read_metrics


def metrics(run: str, fusion_layer: int, base: float) -> dict:
    noise = [{"noise": target, "snr_db": snr, "accuracy": base - offset - snr_offset}
             for offset, target in ((0.1, "audio"), (0.2, "visual"), (0.3, "both"))
             for snr, snr_offset in ((10.0, 0.0), (-10.0, 0.05))]
    return metrics_dict(run=run, fusion_layer=fusion_layer, layers=2, parameters=1234,
                        clean_accuracy=base, noise=noise,
                        removed={"audio": 0.125, "visual": 0.5})


def test_table_layout_and_numbers():
    table = accuracy_table([Metrics.from_dict(metrics("early", 1, 0.9)),
                            Metrics.from_dict(metrics("late", 3, 0.8))])
    lines = table.splitlines()
    assert "early (k=1, 1,234 params)" in lines[0] and "late (k=3 late, 1,234 params)" in lines[0]
    assert lines[1].split() == ["SNR", "(dB)"] + ["audio", "visual", "both"] * 2
    assert [line.split()[0] for line in lines[2:]] == ["clean", "10", "-10", "removed"]
    assert lines[2].split()[1:] == ["90.0"] * 3 + ["80.0"] * 3
    assert lines[4].split()[1:] == ["75.0", "65.0", "55.0", "65.0", "55.0", "45.0"]
    assert lines[5].split()[1:] == ["12.5", "50.0", "-", "12.5", "50.0", "-"]


def test_cli_prints_table_and_refuses_bad_inputs(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(metrics("a", 1, 0.9)))
    assert main([str(tmp_path / "a"), str(tmp_path / "a" / "metrics.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("a (k=1, 1,234 params)") == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert "no metrics file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"run": "x"}))
    with pytest.raises(ValueError, match="missing dataset, fusion_layer"):
        read_metrics(tmp_path / "other.json")
    with pytest.raises(ValueError, match="at least one"):
        accuracy_table([])
