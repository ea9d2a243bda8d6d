"""When does the heard digit enter each layer, and does its code hold over time?"""

import numpy as np

from repsim import activations
from repsim.analysis import (
    cross_temporal_similarity,
    decoding_onset,
    rdm_movie,
    temporal_generalization,
)


def main(path: str = "runs/tutorial-f1/activations.h5", permutations: int = 100) -> dict:
    ds = activations.open(path)
    layers = activations.layer_names(ds)  # e.g. fused.1, fused.2 for early fusion
    found: dict = {"onsets": {}, "stability": {}}
    for layer in layers:
        # (stimulus, time, channel, y, x) on the incongruent stimuli: the heard digit is not
        # the seen one, so decoding it says what the layer took from the audio
        states = activations.select(ds, layer, condition="incongruent")
        result = temporal_generalization(states, "audio_digit",
                                         n_permutations=permutations)
        onset = decoding_onset(result=result)
        print(f"{layer}: sliding decoder {np.round(result.diagonal, 2)}, onset "
              f"{onset.onset or 'none'} (p {np.round(onset.p_values, 3)}), stability "
              f"{result.stability:.2f}")
        found["onsets"][layer] = onset.onset
        found["stability"][layer] = result.stability
        found[f"{layer} generalization"] = result.scores

    # the geometry: an RDM per step of the last layer, and how the first and the last layer's
    # geometries relate step by step (RSA: Spearman correlation of RDMs)
    first, last = (activations.select(ds, layer, condition="clean")
                   for layer in (layers[0], layers[-1]))
    found["movie"] = rdm_movie(last, "correlation", labels="audio_digit")
    found["across"] = cross_temporal_similarity(first, last, "rsa")
    print("RDM movie of", layers[-1], found["movie"].shape, "; RSA of", layers[0], "with",
          layers[-1], "per pair of steps:\n", np.round(found["across"], 2))
    return found


if __name__ == "__main__":
    main()
