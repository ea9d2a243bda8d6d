"""Train one early-fusion network, record it, and look inside it."""

from pathlib import Path

from repsim import activations
from repsim.analysis import cka
from repsim.data.config import DataConfig
from repsim.extract import ExtractConfig
from repsim.extract import run as extract
from repsim.labelled import ablation_sensitivity, probe_all
from repsim.models.fusion import ModelConfig
from repsim.train import TrainConfig
from repsim.train import run as train


def main(run_dir: str = "runs/tutorial-f1", epochs: int = 6,
         n_stimuli: int = 200,
         data: DataConfig | None = None) -> dict[str, float]:
    # 1. Train: audio and vision joined in the first layer (k = 1).
    config = TrainConfig(
        model=ModelConfig(layers=2, hidden=16, fusion_layer=1),
        data=data or DataConfig(dataset="synthetic"),
        epochs=epochs, out_dir=run_dir, device="cpu")
    result = train(config)
    print(f"clean test accuracy {result.metrics.clean_accuracy:.3f}")

    # 2. Record every layer at every time step for the probe set.
    checkpoint = str(Path(run_dir) / "ckpt.pt")
    written = extract(ExtractConfig(checkpoint=checkpoint,
                                    n_stimuli=n_stimuli, device="cpu",
                                    overwrite=True))
    ds = activations.open(written.path)
    print("layers:", activations.layer_names(ds))

    # 3. How alike are the two layers at the last step? (linear CKA)
    def last_step(layer: str):
        return activations.flatten(activations.select(
            ds, layer, time=-1, condition="clean"))

    similarity = cka(last_step("fused.1"), last_step("fused.2"))
    print(f"CKA(fused.1, fused.2) at the last step: {similarity:.2f}")

    # 4. Which digit can be read from each layer? (the heard digit)
    probes = probe_all(ds, target="audio_digit", Cs=[1.0])
    heard = float(probes["accuracy"].sel(layer="fused.2").isel(time=-1))
    print(f"heard digit decoded from fused.2, last step: {heard:.2f}")

    # 5. Which sense does the last layer rely on? (0 vision, 1 audio)
    sensitivity = ablation_sensitivity(ds)
    reliance = float(
        sensitivity["reliance_cka"].sel(layer="fused.2").isel(time=-1))
    print(f"reliance on audio of fused.2: {reliance:.2f}")
    return {"cka": similarity, "heard": heard, "reliance": reliance}


if __name__ == "__main__":
    main()
