"""ConvLSTM layer and the audio-visual fusion network built from it."""

from repsim.models.convlstm import ConvLSTM
from repsim.models.fusion import (
    FusionConvLSTM,
    ModelConfig,
    final_logits,
    matched_branch_width,
    parameter_count,
)

__all__ = ["ConvLSTM", "FusionConvLSTM", "ModelConfig", "final_logits", "matched_branch_width",
           "parameter_count"]
