"""Evaluation under conditions: names, accuracy against scikit-learn, noise and removal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from repsim.conditions import Condition, grid_conditions
from repsim.data import add_white_noise, build_dataset, make_batch
from repsim.device import uses_bf16
from repsim.evaluate import accuracy, noise_grid, predict
from repsim.models.fusion import FusionConvLSTM, ModelConfig

TINY_DATA = {"timesteps": 3, "height": 8, "width": 8, "train_speakers": 4, "val_speakers": 2,
             "test_speakers": 2, "repetitions": 1, "train_pairs": 40, "val_pairs": 30,
             "test_pairs": 30}


@pytest.fixture(scope="module")
def dataset():
    return build_dataset("synthetic", **TINY_DATA)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FusionConvLSTM(ModelConfig(layers=1, hidden=4, fusion_layer=2)).eval()


def test_condition_names_and_snrs():
    assert Condition().name == "clean"
    assert Condition(noise="audio", snr_db=-10.0).name == "audio_snr-10"
    assert Condition(noise="both", snr_db=0.0).name == "both_snr0"
    assert Condition(noise="visual", snr_db=2.5).name == "visual_snr2.5"
    assert Condition(remove="visual").name == "visual_removed"
    both = Condition(noise="both", snr_db=5.0)
    assert (both.audio_snr, both.visual_snr) == (5.0, 5.0)
    audio = Condition(noise="audio", snr_db=5.0)
    assert audio.audio_snr == 5.0 and math.isinf(audio.visual_snr)


@pytest.mark.parametrize(("options", "word"), [
    ({"noise": "video", "snr_db": 0.0}, "noise must be"),
    ({"noise": "audio"}, "finite SNR"),
    ({"noise": "audio", "snr_db": math.nan}, "NaN"),
    ({"remove": "both"}, "remove must be"),
    ({"noise": "audio", "snr_db": 0.0, "remove": "audio"}, "not both")])
def test_bad_conditions(options, word):
    with pytest.raises(ValueError, match=word):
        Condition(**options)


def test_clean_accuracy_matches_sklearn_on_manual_predictions(dataset, model):
    split = dataset.splits["test"]
    batch = make_batch(split, dataset.features, split.pair_audio, split.pair_visual)
    with torch.no_grad():
        expected_pred = model(batch.audio, batch.visual).argmax(dim=1)
    expected = accuracy_score(batch.audio_digit.numpy(), expected_pred.numpy())
    got = accuracy(model, split, dataset.features, batch_size=7)
    assert got == pytest.approx(expected, abs=1e-12)
    logits, targets = predict(model, split, dataset.features, batch_size=7)
    assert logits.shape == (len(split), 10) and torch.equal(targets, split.clip_digit[
        split.pair_audio])


def test_removed_modality_is_zeroed(dataset, model):
    split = dataset.splits["val"]
    batch = make_batch(split, dataset.features, split.pair_audio, split.pair_visual)
    with torch.no_grad():
        expected = model(torch.zeros_like(batch.audio), batch.visual)
    logits, _ = predict(model, split, dataset.features, condition=Condition(remove="audio"))
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)


def test_noise_is_seeded_per_condition_and_changes_inputs(dataset, model):
    split = dataset.splits["val"]
    condition = Condition(noise="visual", snr_db=-5.0)
    first, _ = predict(model, split, dataset.features, condition=condition, seed=3)
    again, _ = predict(model, split, dataset.features, condition=condition, seed=3)
    other, _ = predict(model, split, dataset.features, condition=condition, seed=4)
    clean, _ = predict(model, split, dataset.features)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, clean)
    # the same draw as make_batch with one generator per pair, seeded from (seed, position)
    generators = [torch.Generator().manual_seed(
        int(np.random.SeedSequence([3, i]).generate_state(1)[0])) for i in range(len(split))]
    batch = make_batch(split, dataset.features, split.pair_audio, split.pair_visual,
                       visual_snr=-5.0, generator=generators)
    with torch.no_grad():
        torch.testing.assert_close(first, model(batch.audio, batch.visual), rtol=0, atol=1e-6)


@pytest.mark.parametrize("noise", ["audio", "visual", "both"])
def test_noisy_predictions_do_not_depend_on_the_batch_size(dataset, model, noise):
    split = dataset.splits["val"]
    condition = Condition(noise=noise, snr_db=0.0)
    whole, _ = predict(model, split, dataset.features, condition=condition, batch_size=64)
    for batch_size in (1, 7, 16):
        batched, _ = predict(model, split, dataset.features, condition=condition,
                             batch_size=batch_size)
        torch.testing.assert_close(batched, whole, rtol=0, atol=1e-5)


def test_one_generator_per_sample_must_match_the_batch():
    with pytest.raises(ValueError, match="2 generators for 3 samples"):
        add_white_noise(torch.ones(3, 4), 0.0, generator=[torch.Generator()] * 2)


def test_noise_grid_layout_and_values(dataset, model):
    split = dataset.splits["test"]
    snrs = (10.0, -10.0)
    seen = []
    grid = noise_grid(model, split, dataset.features, snrs=snrs, seed=1, progress=seen.append)
    assert seen == [c.name for c in grid_conditions(snrs)]
    assert seen[0] == "clean" and seen[-2:] == ["audio_removed", "visual_removed"]
    assert [(e["noise"], e["snr_db"]) for e in grid["noise"]] == [
        (target, snr) for target in ("audio", "visual", "both") for snr in snrs]
    assert grid["clean_accuracy"] == accuracy(model, split, dataset.features)
    for entry in grid["noise"]:
        condition = Condition(noise=entry["noise"], snr_db=entry["snr_db"])
        assert entry["accuracy"] == accuracy(model, split, dataset.features,
                                             condition=condition, seed=1)
    assert grid["removed"]["visual"] == accuracy(model, split, dataset.features,
                                                 condition=Condition(remove="visual"))


def test_bad_arguments(dataset, model):
    with pytest.raises(ValueError, match="finite"):
        grid_conditions([math.inf])
    with pytest.raises(ValueError, match="batch size"):
        accuracy(model, dataset.splits["val"], dataset.features, batch_size=0)


def test_precision_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [uses_bf16(p, cpu) for p in ("auto", "float32", "bf16")] == [False, False, True]
    assert [uses_bf16(p, cuda) for p in ("auto", "float32", "bf16")] == [True, False, True]
    with pytest.raises(ValueError, match="precision must be one of"):
        uses_bf16("fp16", cpu)


@pytest.mark.parametrize("fusion_layer", [1, 2, 3])
def test_noise_grid_shares_streams_and_equals_each_condition_alone(dataset, fusion_layer):
    """The grid evaluates all conditions batch by batch, sharing a stream's work between
    conditions that give it the same input; every accuracy equals the condition evaluated
    alone exactly (several batches, every fusion depth of a 2-layer gated network)."""
    torch.manual_seed(fusion_layer)
    model = FusionConvLSTM(ModelConfig(layers=2, hidden=4, fusion_layer=fusion_layer,
                                       fusion_op="gated")).eval()
    split = dataset.splits["test"]
    calls = {"audio": 0, "visual": 0}
    branch = model.branch

    def counted(modality, x):
        calls[modality] += 1
        return branch(modality, x)

    model.branch = counted
    snrs = (5.0, -5.0)
    grid = noise_grid(model, split, dataset.features, snrs=snrs, seed=2, batch_size=8)
    del model.branch
    batches = math.ceil(len(split) / 8)
    # clean audio: clean, visual noise, visual removed; audio noise: audio and both noise
    assert calls == {"audio": batches * (1 + len(snrs) + 1),
                     "visual": batches * (1 + 2 * len(snrs) + 1)}
    alone = {c.name: accuracy(model, split, dataset.features, condition=c, seed=2,
                              batch_size=8) for c in grid_conditions(snrs)}
    assert grid["clean_accuracy"] == alone["clean"]
    for entry in grid["noise"]:
        assert entry["accuracy"] == alone[f"{entry['noise']}_snr{entry['snr_db']:g}"]
    for modality, value in grid["removed"].items():
        assert value == alone[f"{modality}_removed"]
