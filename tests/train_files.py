"""Tiny training runs for tests that train: a config that trains in about a second, its
dataset, and its JSON file for the command line."""

from repsim.data.config import DataConfig
from repsim.models.fusion import ModelConfig
from repsim.train import TrainConfig

TINY_DATA = {"train_speakers": 4, "val_speakers": 2, "test_speakers": 2, "repetitions": 1,
             "train_pairs": 32, "val_pairs": 20, "test_pairs": 20}
TINY_DATA_CONFIG = DataConfig(timesteps=3, height=8, width=8, options=dict(TINY_DATA))


def tiny_config(tmp_path, name="run", **changes) -> TrainConfig:
    """A two-epoch run of a one-layer model on :data:`TINY_DATA_CONFIG`, in ``tmp_path/name``."""
    values = {"model": ModelConfig(layers=1, hidden=3, fusion_layer=2),
              "data": TINY_DATA_CONFIG, "epochs": 2, "batch_size": 8, "lr": 1e-2,
              "noise_snrs": (0.0,), "device": "cpu", "out_dir": str(tmp_path / name)}
    values.update(changes)
    return TrainConfig(**values)


def config_file(tmp_path, config: TrainConfig) -> str:
    """``config`` written to ``tmp_path/config.json`` (for ``--config``); returns the path."""
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    return str(path)
