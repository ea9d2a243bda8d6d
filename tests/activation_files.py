"""Small activation files for tests, written in one call through the library's writer."""

from pathlib import Path

from repsim.activations import ActivationWriter


def write_activations(path, states, stimuli, attrs=None, *, logits=None, prediction=None,
                      dtype="float32", compression="none", overwrite=False) -> Path:
    """Write ``states[layer][state]`` ``(n, T, C, H, W)`` arrays with per-stimulus coordinates
    ``stimuli`` as one complete activation file; returns ``path``."""
    with ActivationWriter(path, stimuli, attrs=attrs, dtype=dtype, compression=compression,
                          overwrite=overwrite) as writer:
        writer.write(states, logits=logits, prediction=prediction)
    return Path(path)
