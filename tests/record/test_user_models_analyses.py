"""Networks of the kinds users bring, recorded through the documented API with their own
stimulus tables, and every analysis figure run on their files with ``--files``, ``--target``
and ``--condition``: a two-input model (a transformer encoder over audio frames, a per-frame
CNN that sees time folded into its batch, a GRU that joins them, a head called once), an LSTM
recorded with its head, and a ResNet-style per-frame CNN with a shared activation module. The
numbers are checked against code written out here (float64 CKA, scikit-learn's logistic
regression on the same folds, scipy's Spearman correlation, accuracy from the logits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from record_models import PerFrameResNet
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import repsim
from repsim import activations
from repsim.figures import figure
from repsim.plotting import read_table

N, T, CLASSES = 72, 4, 3
CONDITIONS = ["clean", "audio_removed", "visual_removed", "audio_snr0", "audio_snr-10",
              "visual_snr0"]


class AVNet(nn.Module):
    """Audio ``(B, T, 8)`` through a transformer encoder; video ``(B, T, 1, 6, 6)`` through a
    CNN that sees the frames folded into its batch; a GRU over both; a head at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_embed = nn.Linear(8, 16)
        layer = nn.TransformerEncoderLayer(16, nhead=2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True)
        self.audio_encoder = nn.TransformerEncoder(layer, num_layers=1,
                                                   enable_nested_tensor=False)
        self.frame_cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fusion = nn.GRU(20, 12, batch_first=True)
        self.head = nn.Linear(12, CLASSES)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        heard = self.audio_encoder(self.audio_embed(audio))
        seen = self.frame_cnn(visual.flatten(0, 1)).reshape(*visual.shape[:2], -1)
        joined, _ = self.fusion(torch.cat([heard, seen], dim=-1))
        return self.head(joined[:, -1])


class AudioLSTM(nn.Module):
    """An LSTM over the audio frames and a head on its last step (the video is not used)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 10, batch_first=True)
        self.head = nn.Linear(10, CLASSES)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(audio)
        return self.head(out[:, -1])


def _stimuli() -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Audio and video whose pattern carries the class, with a user's table (ids as written,
    a label and a speaker)."""
    generator = torch.Generator().manual_seed(0)
    label = torch.arange(N) % CLASSES
    speaker = (torch.arange(N) // CLASSES) % 4
    audio_codes = torch.randn(CLASSES, 1, 8, generator=generator)
    audio = 1.5 * audio_codes[label] + torch.randn(N, T, 8, generator=generator)
    visual_codes = torch.rand(CLASSES, 1, 1, 6, 6, generator=generator)
    visual = visual_codes[label] + 0.3 * torch.rand(N, T, 1, 6, 6, generator=generator)
    table = pd.DataFrame({"stimulus_id": [f"utt-{i:03d}" for i in range(N)],
                          "label": label.numpy(), "speaker": [f"spk{s}" for s in speaker]})
    return {"audio": audio, "visual": visual}, table


def _batches(inputs: dict[str, torch.Tensor], size: int = 24) -> list[dict[str, torch.Tensor]]:
    return [{name: value[start:start + size] for name, value in inputs.items()}
            for start in range(0, N, size)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The three models' activation files."""
    folder = tmp_path_factory.mktemp("user-models")
    inputs, table = _stimuli()
    torch.manual_seed(0)
    repsim.record(AVNet(), _batches(inputs), ["audio_encoder", "frame_cnn", "fusion", "head"],
                  folder / "avnet.h5", table=table, conditions=CONDITIONS,
                  time_dim={"audio_encoder": 1, "fusion": 1}, fold_time={"frame_cnn": True},
                  logits=lambda out: out, model_name="AV transformer")
    torch.manual_seed(1)
    repsim.record(AudioLSTM(), _batches(inputs), ["lstm", "head"], folder / "lstm.h5",
                  table=table, conditions=CONDITIONS, time_dim={"lstm": 1},
                  logits=lambda out: out)
    frames = {"frames": inputs["visual"].expand(-1, -1, 3, -1, -1).contiguous()}
    torch.manual_seed(2)
    repsim.record(PerFrameResNet(), _batches(frames), ["block.conv1", "block.conv2", "head"],
                  folder / "resnet.h5", table=table, conditions=["clean", "frames_snr0"])
    return folder


def _run(name: str, argv: list[str], out) -> pd.DataFrame:
    assert figure(name).main([*argv, "--out-dir", str(out)]) == 0
    assert (out / f"{name}.png").stat().st_size > 0
    return read_table(out / f"{name}.csv")[0]


def _states(path, layer: str, condition: str, time: int) -> np.ndarray:
    ds = activations.open(path)
    return np.asarray(activations.select(ds, layer, time=time, condition=condition).values,
                      dtype=np.float64).reshape((ds["condition"].values == condition).sum(), -1)


def _cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) in float64."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2
                 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_the_files_carry_their_own_time_axes_names_and_order(recorded):
    av = activations.open(recorded / "avnet.h5")
    assert activations.layer_names(av) == ["audio_encoder", "frame_cnn", "fusion", "head"]
    assert activations.layer_depths(av) == {"audio_encoder": 1, "frame_cnn": 2, "fusion": 3,
                                            "head": 4}
    assert {layer: activations.time_steps(av, layer) for layer in activations.layer_names(av)} \
        == {"audio_encoder": T, "frame_cnn": T, "fusion": T, "head": 1}
    assert av.attrs["model_name"] == "AV transformer"
    assert list(av["stimulus_id"].values[:2]) == ["utt-000", "utt-001"]


def test_cka_across_two_users_models_and_within_one(recorded, tmp_path):
    av, lstm = recorded / "avnet.h5", recorded / "lstm.h5"
    table = _run("cka_by_layer", ["--files", str(av), str(lstm)], tmp_path / "two")
    assert set(table["x_model"]) == {"AV transformer"} and set(table["y_model"]) == {"lstm"}
    row = table[(table["x_layer"] == "fusion") & (table["y_layer"] == "lstm")
                & (table["time_step"] == 2)]
    assert row["cka"].item() == pytest.approx(
        _cka(_states(av, "fusion", "clean", 1), _states(lstm, "lstm", "clean", 1)), abs=1e-5)
    uneven = table[(table["x_layer"] == "head") & (table["y_layer"] == "lstm")]
    assert uneven[["time_step", "y_time_step"]].values.tolist() == [[1, T]]  # last steps
    assert uneven["cka"].item() == pytest.approx(
        _cka(_states(av, "head", "clean", 0), _states(lstm, "lstm", "clean", T - 1)), abs=1e-5)

    within = _run("cka_by_layer", ["--files", str(recorded / "resnet.h5")], tmp_path / "one")
    same = within[within["x_layer"] == within["y_layer"]]
    np.testing.assert_allclose(same["cka"], 1.0, atol=1e-6)


def test_probes_of_the_users_columns_agree_with_scikit_learn(recorded, tmp_path):
    files = [str(recorded / name) for name in ("avnet.h5", "lstm.h5", "resnet.h5")]
    table = _run("probes_by_layer", ["--files", *files, "--target", "label", "speaker",
                                     "--condition", "clean"], tmp_path)
    assert set(table["target"]) == {"label", "speaker"}
    assert set(table["model"]) == {"AV transformer", "lstm", "resnet"}
    x = _states(recorded / "avnet.h5", "fusion", "clean", T - 1)
    y = activations.open(recorded / "avnet.h5")["label"].values[:N]
    theirs = np.empty_like(y)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        theirs[test] = make_pipeline(StandardScaler(), LogisticRegression(
            C=1.0, max_iter=5000)).fit(x[train], y[train]).predict(x[test])
    row = table[(table["model"] == "AV transformer") & (table["layer"] == "fusion")
                & (table["target"] == "label") & (table["time_step"] == T)]
    assert row["accuracy"].item() == pytest.approx(np.mean(theirs == y), abs=2 / N)
    head = table[(table["model"] == "lstm") & (table["layer"] == "head")]
    assert sorted(head["time_step"].unique()) == [1]  # the head's one step, not padded


def test_rsa_of_the_users_columns_matches_scipy(recorded, tmp_path):
    av = recorded / "avnet.h5"
    table = _run("rsa_by_layer", ["--files", str(av), "--target", "label", "speaker",
                                  "--n-boot", "0"], tmp_path)
    fits = table[table["quantity"] == "model_correlation"]
    assert set(fits["hypothesis"]) == {"label", "speaker"}
    ds = activations.open(av)
    x = _states(av, "audio_encoder", "clean", 1)
    cells = pd.DataFrame({"label": ds["label"].values[:N], "speaker": ds["speaker"].values[:N]})
    groups = cells.groupby(["label", "speaker"]).indices
    keys = sorted(groups)
    means = np.stack([x[groups[key]].mean(0) for key in keys])
    same_label = pdist(np.array([[key[0]] for key in keys]), lambda a, b: float(a[0] != b[0]))
    expected = spearmanr(pdist(means, "correlation"), same_label)[0]
    row = fits[(fits["layer"] == "audio_encoder") & (fits["time_step"] == 2)
               & (fits["hypothesis"] == "label")]
    assert row["value"].item() == pytest.approx(expected, abs=1e-5)


def test_ablation_reads_the_removals_from_the_file(recorded, tmp_path):
    av = recorded / "avnet.h5"
    table = _run("ablation_sensitivity", ["--files", str(av), "--target", "label"], tmp_path)
    sensitivity = table[table["measure"] == "cka_sensitivity"]
    assert set(sensitivity["removed"]) == {"audio", "visual"}
    row = sensitivity[(sensitivity["removed"] == "audio") & (sensitivity["layer"] == "fusion")
                      & (sensitivity["time_step"] == 1)]
    expected = 1 - _cka(_states(av, "fusion", "clean", 0),
                        _states(av, "fusion", "audio_removed", 0))
    assert row["value"].item() == pytest.approx(expected, abs=1e-5)
    # the frame CNN never sees the audio
    frames = sensitivity[(sensitivity["removed"] == "audio")
                         & (sensitivity["layer"] == "frame_cnn")]
    np.testing.assert_allclose(frames["value"], 0.0, atol=1e-6)
    accuracy = table[table["measure"] == "accuracy"].set_index("removed")["value"]
    ds = activations.open(av)
    clean = ds["condition"].values == "clean"
    predicted = ds["logits"].values[clean].argmax(-1)
    assert accuracy["none"] == pytest.approx(np.mean(predicted == ds["label"].values[clean]))


def test_noise_robustness_scores_the_recorded_predictions(recorded, tmp_path):
    files = [str(recorded / name) for name in ("avnet.h5", "lstm.h5")]
    table = _run("noise_robustness", ["--files", *files, "--target", "label"], tmp_path)
    assert set(table["input"]) == {"none", "audio", "visual"}
    ds = activations.open(recorded / "lstm.h5")
    rows = ds["condition"].values == "audio_snr-10"
    expected = np.mean(ds["logits"].values[rows].argmax(-1) == ds["label"].values[rows])
    row = table[(table["model"] == "lstm") & (table["input"] == "audio")
                & (table["snr_db"] == -10)]
    assert row["accuracy"].item() == pytest.approx(expected)
    assert row["n_stimuli"].item() == N
    # the LSTM never sees the video: noise on it changes nothing
    lstm = table[table["model"] == "lstm"].set_index(["input", "snr_db"])["accuracy"]
    assert lstm[("visual", 0.0)] == pytest.approx(lstm[("none", np.inf)])


def test_a_users_file_without_a_target_asks_for_one(recorded, tmp_path, capsys):
    status = figure("probes_by_layer").main(["--files", str(recorded / "lstm.h5"),
                                             "--out-dir", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert "--target COLUMN" in err and "label, speaker" in err
    status = figure("probes_by_layer").main(["--files", str(recorded / "lstm.h5"),
                                             "--target", "labl", "--out-dir", str(tmp_path)])
    assert status == 2 and "has no stimulus column 'labl'" in capsys.readouterr().err
    status = figure("ablation_sensitivity").main(["--files", str(recorded / "resnet.h5"),
                                                  "--out-dir", str(tmp_path)])
    assert status == 2
    assert "no condition that removes an input" in capsys.readouterr().err
