"""What defines a fusion network's architecture, without torch:
[ModelConfig][repsim.models.config.ModelConfig], the names of fusion depths, and parameter
counts computed from shapes (so that command lines and configs load quickly;
``repsim.models.fusion`` builds the network)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from repsim.config import Config, check_positive_int

READOUTS = ("last", "per_step")
# Bounds on the architecture, checked when a config is made, so that a typo (hidden =
# 100000000) is one line instead of an attempt to allocate gigabytes; and on the memory of
# one training batch (batch_bytes), checked before a model is built.
MAX_LAYERS = 64
MAX_HIDDEN = 4096
MAX_KERNEL = 31
MAX_BATCH_BYTES = 64 << 30
# Fusion operators (built by repsim.models.operators): their names and the default.
FUSION_OPS = ("concat", "gated", "film")
DEFAULT_FUSION_OP = "concat"


def check_fusion_op(name: object) -> str:
    """Check a fusion operator's name.

    Parameters
    ----------
    name
        One of ``FUSION_OPS``: ``"concat"``, ``"gated"`` or ``"film"``.

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    ValueError
        For anything else, naming the choices.
    """
    if not isinstance(name, str) or name not in FUSION_OPS:
        raise ValueError(f"unknown fusion operator {name!r}; choose one of "
                         f"{', '.join(FUSION_OPS)}")
    return name


def operator_tag(name: str) -> str | None:
    """How run names and report rows mark operator ``name``.

    Parameters
    ----------
    name
        A fusion operator's name.

    Returns
    -------
    str or None
        None for the default (so that runs from before operators keep their names), else
        the name.

    Raises
    ------
    ValueError
        For an unknown operator.
    """
    return None if check_fusion_op(name) == DEFAULT_FUSION_OP else name


def operator_parameters(name: str, channels: int) -> int:
    """Trainable parameters of operator ``name`` on ``channels``-channel streams, from shapes.

    Parameters
    ----------
    name
        A fusion operator's name.
    channels
        C, the channels of each stream.

    Returns
    -------
    int
        ``concat`` 0, ``gated`` 2 (2C^2 + 2C) + (4C^2 + 2C), ``film`` 2 (2C^2 + 2C).

    Raises
    ------
    ValueError
        For an unknown operator.
    """
    c = channels
    counts = {"concat": 0, "gated": 2 * (2 * c * c + 2 * c) + 4 * c * c + 2 * c,
              "film": 2 * (2 * c * c + 2 * c)}
    return counts[check_fusion_op(name)]


def fusion_role(fusion_layer: int, layers: int) -> str:
    """The one rule that names fusion depths.

    Parameters
    ----------
    fusion_layer
        k, the fusion layer.
    layers
        The network's layers.

    Returns
    -------
    str
        ``"early"`` for k = 1, ``"late"`` for k = layers + 1 (joined in the readout only),
        else ``"k=<k>"``.
    """
    if fusion_layer == 1:
        return "early"
    if fusion_layer == layers + 1:
        return "late"
    return f"k={fusion_layer}"


@dataclass
class ModelConfig(Config):
    """Architecture of a [FusionConvLSTM][repsim.models.fusion.FusionConvLSTM]; round-trips
    through [to_dict][repsim.config.Config.to_dict].

    The config is checked when it is made, against bounds (at most 64 layers, 4096 channels,
    kernel 31) that turn a typo into one line instead of an attempt to allocate gigabytes.

    Parameters
    ----------
    layers
        L, the ConvLSTM layers of each path from input to readout.
    hidden
        Channels of the fused layers, and of the branch layers unless ``branch_hidden`` or
        ``match_params`` says otherwise.
    kernel
        The convolutions' kernel size; odd (it keeps the frame size).
    fusion_layer
        k, the layer where the streams join: 1..layers+1 (1 = early, at the inputs;
        layers + 1 = late, in the readout only); the string ``"late"`` is accepted for
        ``layers + 1`` and stored as that number.
    readout
        ``"last"``: logits from the last time step; ``"per_step"``: at every step.
    match_params
        Pick the branch width that brings the parameter count closest to the early-fusion
        (k = 1) concatenation model of the same layers and hidden
        ([matched_branch_width][repsim.models.config.matched_branch_width]), so that models
        differing in k or operator differ in where and how they fuse, not in size.
    branch_hidden
        The width of the branch (pre-fusion) layers; ``None`` for ``hidden`` (or the matched
        width with ``match_params``).
    in_channels
        Channels of each modality's input frames.
    classes
        Outputs of the readout.
    fusion_op
        How the streams are joined at the fusion layer: ``"concat"``, ``"gated"`` or
        ``"film"`` (``FUSION_OPS``; a config saved before operators existed has none and means
        ``concat``).

    Raises
    ------
    ValueError
        For an unknown ``fusion_op`` or ``readout``; ``layers``, ``hidden``, ``kernel``,
        ``in_channels`` or ``classes`` not a positive integer; ``layers``, ``hidden`` or
        ``kernel`` above its bound; an even kernel; a ``fusion_layer`` outside
        1..layers+1; or a ``branch_hidden`` above 4096, not a positive integer, or given
        together with ``match_params``.

    Examples
    --------
    >>> from repsim.models.config import ModelConfig
    >>> config = ModelConfig(layers=3, fusion_layer="late")
    >>> config.fusion_layer, config.role
    (4, 'late')
    >>> ModelConfig.from_dict(config.to_dict()) == config
    True
    """

    layers: int = 2
    hidden: int = 16
    kernel: int = 3
    fusion_layer: int = 1
    readout: str = "last"
    match_params: bool = False
    branch_hidden: int | None = None
    in_channels: int = 1
    classes: int = 10
    fusion_op: str = DEFAULT_FUSION_OP

    KIND = "model"

    def __post_init__(self) -> None:
        check_fusion_op(self.fusion_op)
        for name in ("layers", "hidden", "kernel", "in_channels", "classes"):
            check_positive_int(f"model {name}", getattr(self, name))
        for name, limit in (("layers", MAX_LAYERS), ("hidden", MAX_HIDDEN),
                            ("kernel", MAX_KERNEL), ("branch_hidden", MAX_HIDDEN)):
            value = getattr(self, name)
            if isinstance(value, int) and value > limit:
                raise ValueError(f"model {name} must be at most {limit}, got {value}")
        if self.kernel % 2 == 0:
            raise ValueError(f"model kernel must be odd (it keeps the frame size), "
                             f"got {self.kernel}")
        if self.fusion_layer == "late":
            self.fusion_layer = self.layers + 1
        if (isinstance(self.fusion_layer, bool) or not isinstance(self.fusion_layer, int)
                or not 1 <= self.fusion_layer <= self.layers + 1):
            raise ValueError(f"fusion layer must be 1..{self.layers + 1} (or 'late') for a "
                             f"{self.layers}-layer model with the {self.fusion_op!r} operator "
                             f"(every operator takes every one of these), got "
                             f"{self.fusion_layer!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.branch_hidden is not None:
            if self.match_params:
                raise ValueError("give either branch_hidden or match_params, not both")
            check_positive_int("model branch_hidden", self.branch_hidden)

    @property
    def late(self) -> bool:
        """True when the streams meet only in the readout."""
        return self.role == "late"

    @property
    def role(self) -> str:
        """``"early"``, ``"late"`` or ``"k=<k>"`` (see ``fusion_role``)."""
        return fusion_role(self.fusion_layer, self.layers)

    def branch_width(self) -> int:
        """Channels of the branch layers (before the fusion layer).

        Returns
        -------
        int
            ``branch_hidden`` if set; else, with ``match_params`` and k > 1, the matched
            width ([matched_branch_width][repsim.models.config.matched_branch_width]); else
            ``hidden``.
        """
        if self.branch_hidden is not None:
            return self.branch_hidden
        if self.match_params and self.fusion_layer > 1:
            return matched_branch_width(self)
        return self.hidden


def _convlstm_params(in_channels: int, hidden: int, kernel: int) -> int:
    """Parameters of one ConvLSTM layer: input conv with bias + recurrent conv without."""
    return 4 * hidden * (in_channels + hidden) * kernel * kernel + 4 * hidden


def parameter_count(config: ModelConfig, branch_width: int | None = None) -> int:
    """Number of trainable parameters of ``FusionConvLSTM(config)``, computed from shapes.

    Parameters
    ----------
    config
        The architecture.
    branch_width
        Overrides the width of the branch layers (used to search for a match); None: the
        config's ([branch_width][repsim.models.config.ModelConfig.branch_width]).

    Returns
    -------
    int
        What the built network's
        [parameter_count][repsim.models.fusion.FusionConvLSTM.parameter_count] gives.

    Examples
    --------
    One 1 x 1 ConvLSTM layer of 4 channels on both inputs (4 x 4 x (2 + 4) weights and
    4 x 4 biases), then a readout of 10 classes (4 x 10 + 10):

    >>> from repsim.models.config import ModelConfig, parameter_count
    >>> parameter_count(ModelConfig(layers=1, hidden=4, kernel=1))
    162
    """
    width = config.branch_width() if branch_width is None else branch_width
    k, kernel = config.fusion_layer, config.kernel
    total = 0
    channels = config.in_channels
    for _ in range(1, k):  # two branches of depth k-1
        total += 2 * _convlstm_params(channels, width, kernel)
        channels = width
    total += operator_parameters(config.fusion_op, channels)
    channels = 2 * channels  # the fusion layer reads both streams
    for _ in range(k, config.layers + 1):
        total += _convlstm_params(channels, config.hidden, kernel)
        channels = config.hidden
    return total + channels * config.classes + config.classes


def batch_bytes(config: ModelConfig, batch_size: int, timesteps: int, height: int,
                width: int) -> int:
    """About how many bytes one training step of ``batch_size`` pairs takes, from shapes
    alone.

    Counts float32 weights with their gradients and AdamW's two moments (4 x the
    parameters), both inputs, and what autograd keeps of every ConvLSTM layer, stream and
    time step (the convolution's input, the four gates before and after their
    nonlinearities, the cell state, its tanh and the output: ``in + 12 x hidden`` maps).
    Within a factor of two of what torch allocates; meant to refuse sizes off by orders of
    magnitude before anything is built.

    Parameters
    ----------
    config
        The architecture.
    batch_size
        Pairs per training step.
    timesteps, height, width
        The frame grid of each input.

    Returns
    -------
    int
        Bytes.
    """
    width_branch, k = config.branch_width(), config.fusion_layer
    maps, channels = 0, config.in_channels
    for _ in range(1, k):  # two branches
        maps += 2 * (channels + 12 * width_branch)
        channels = width_branch
    channels *= 2  # the fusion layer reads both streams
    for _ in range(k, config.layers + 1):
        maps += channels + 12 * config.hidden
        channels = config.hidden
    inputs = 2 * config.in_channels
    per_pair = (maps + inputs) * timesteps * height * width
    return 4 * (4 * parameter_count(config) + batch_size * per_pair)


def check_batch_memory(config: ModelConfig, batch_size: int, timesteps: int, height: int,
                       width: int) -> None:
    """Refuse a training batch too large for any machine.

    Parameters
    ----------
    config, batch_size, timesteps, height, width
        As for ``batch_bytes``.

    Raises
    ------
    ValueError
        In one line, when ``batch_bytes`` exceeds ``MAX_BATCH_BYTES`` (64 GiB).
    """
    needed = batch_bytes(config, batch_size, timesteps, height, width)
    if needed > MAX_BATCH_BYTES:
        raise ValueError(f"a training batch needs about {needed / 2**30:,.0f} GiB (batch_size "
                         f"{batch_size}, {timesteps} x {height} x {width} frames, "
                         f"{config.layers} layer(s) of {config.hidden} channels); at most "
                         f"{MAX_BATCH_BYTES / 2**30:g} GiB is allowed: use a smaller "
                         f"batch_size, hidden or frame grid")


def matched_branch_width(config: ModelConfig) -> int:
    """Branch width whose model has the parameter count closest to the k = 1 concatenation
    model's.

    The reference is ``config`` with ``fusion_layer=1``, the ``concat`` operator and no
    branch width of its own; the candidates keep ``config``'s fusion layer and operator.

    Parameters
    ----------
    config
        The architecture whose branch width is matched.

    Returns
    -------
    int
        The width, among 1 to 2 x ``hidden``, whose
        [parameter_count][repsim.models.config.parameter_count] is nearest the reference's
        (the narrowest of equals).
    """
    target = parameter_count(dataclasses.replace(config, fusion_layer=1, match_params=False,
                                                 branch_hidden=None,
                                                 fusion_op=DEFAULT_FUSION_OP))
    candidates = range(1, 2 * config.hidden + 1)
    return min(candidates, key=lambda w: (abs(parameter_count(config, w) - target), w))
