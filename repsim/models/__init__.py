"""ConvLSTM layer and the audio-visual fusion network built from it.

The names below are imported on first use (``repsim.lazy``): ``repsim.models.config`` loads
without torch."""

from typing import TYPE_CHECKING

from repsim.lazy import lazy_package

if TYPE_CHECKING:
    from repsim.models.config import ModelConfig, matched_branch_width, parameter_count
    from repsim.models.convlstm import ConvLSTM
    from repsim.models.fusion import FusionConvLSTM, final_logits

__all__ = ["ConvLSTM", "FusionConvLSTM", "ModelConfig", "final_logits", "matched_branch_width",
           "parameter_count"]

lazy_package(__name__)
