"""Audio and image features on the common frame grid.

Audio: waveform -> power STFT (Hann window) -> triangular mel filterbank (HTK mel scale)
-> natural log -> standardised with training-set statistics -> T consecutive windows of W
frames, one window per time step. Images: resized to H x W with antialiasing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

LOG_FLOOR = 1e-6  # added to mel power before the log, so silence maps to a finite value


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: ``2595 log10(1 + f / 700)``.

    Parameters
    ----------
    hz
        Frequencies in Hz.

    Returns
    -------
    numpy.ndarray
        Mels.
    """
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """The inverse of [hz_to_mel][repsim.data.features.hz_to_mel].

    Parameters
    ----------
    mel
        Mels.

    Returns
    -------
    numpy.ndarray
        Frequencies in Hz.
    """
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters with peak 1, equally spaced in mel.

    Parameters
    ----------
    n_mels
        The number of filters (mel bands).
    n_fft
        The STFT size.
    sample_rate
        In Hz.
    fmin, fmax
        The band's edges in Hz; ``fmax=None`` is ``sample_rate / 2``.

    Returns
    -------
    numpy.ndarray
        ``(n_mels, n_fft // 2 + 1)``.

    Raises
    ------
    ValueError
        Unless ``0 <= fmin < fmax <= sample_rate / 2``.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}")
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


@dataclass(frozen=True)
class LogMelFrames:
    """Waveforms ``(B, n_samples)`` -> standardised log-mel frames ``(B, T, 1, H, W)``.

    The hop is chosen so that a clip of ``n_samples`` yields at least ``T * W`` STFT frames
    (centred, reflect-padded); the first ``T * W`` are kept.

    Parameters
    ----------
    sample_rate
        In Hz.
    n_samples
        The length of every clip (see [clip_arrays][repsim.data.features.clip_arrays]).
    timesteps
        T, the time steps.
    height
        H, the mel bands.
    width
        W, the STFT frames per time step.
    n_fft
        The STFT size (Hann window).
    fmin, fmax
        The mel band's edges in Hz; ``fmax=None`` is half the sample rate.
    mean, std
        Standardise the log-mel values; fitted on training clips with
        [fit][repsim.data.features.LogMelFrames.fit].

    Raises
    ------
    ValueError
        For a size that is not positive, or clips too short for ``T x W`` frames.
    """

    sample_rate: int
    n_samples: int
    timesteps: int
    height: int
    width: int
    n_fft: int = 256
    fmin: float = 0.0
    fmax: float | None = None
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_samples", "timesteps", "height", "width", "n_fft"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hop < 1:
            raise ValueError(f"{self.n_samples} samples are too few for {self.timesteps} x "
                             f"{self.width} frames")

    @property
    def hop(self) -> int:
        """The STFT hop in samples: ``n_samples // (T * W)``."""
        return self.n_samples // (self.timesteps * self.width)

    def filterbank(self) -> np.ndarray:
        """The mel filterbank of these settings.

        Returns
        -------
        numpy.ndarray
            ``(H, n_fft // 2 + 1)``.
        """
        return mel_filterbank(self.height, self.n_fft, self.sample_rate, self.fmin, self.fmax)

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Unstandardised log-mel power.

        Parameters
        ----------
        waveforms
            ``(B, n_samples)``.

        Returns
        -------
        torch.Tensor
            ``(B, H, T * W)`` float32.
        """
        if waveforms.dim() != 2 or waveforms.shape[1] != self.n_samples:
            raise ValueError(f"expected waveforms of shape (B, {self.n_samples}), "
                             f"got {tuple(waveforms.shape)}")
        window = torch.hann_window(self.n_fft, device=waveforms.device)
        spec = torch.stft(waveforms.float(), self.n_fft, hop_length=self.hop, window=window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (B, F, frames)
        fb = torch.as_tensor(self.filterbank(), dtype=torch.float32, device=waveforms.device)
        mel = torch.matmul(fb, power[..., : self.timesteps * self.width])
        return torch.log(mel + LOG_FLOOR)

    def fit(self, waveforms: torch.Tensor, batch_size: int = 512) -> LogMelFrames:
        """A copy whose mean and std are those of the log-mel values of ``waveforms``.

        Parameters
        ----------
        waveforms
            ``(B, n_samples)`` training clips.
        batch_size
            Clips per STFT batch (bounds the memory).

        Returns
        -------
        LogMelFrames
        """
        return self.fit_transform(waveforms, batch_size=batch_size)[0]

    def fit_transform(self, waveforms: torch.Tensor, fit_rows: torch.Tensor | None = None,
                      batch_size: int = 512) -> tuple[LogMelFrames, torch.Tensor]:
        """Fit mean and std on some clips and return the frames of every clip, computing each clip's
        log-mel once.

        Parameters
        ----------
        waveforms
            ``(B, n_samples)``.
        fit_rows
            The rows to fit on; ``None``: all.
        batch_size
            Clips per STFT batch.

        Returns
        -------
        features : LogMelFrames
            The fitted copy.
        frames : torch.Tensor
            ``(B, T, 1, H, W)`` of every clip.
        """
        raw = torch.cat([self.log_mel(waveforms[start:start + batch_size])
                         for start in range(0, len(waveforms), batch_size)])
        fit_on = raw if fit_rows is None else raw[fit_rows]
        std, mean = torch.std_mean(fit_on.double(), correction=0)
        fitted = replace(self, mean=mean.item(), std=max(std.item(), 1e-8))
        return fitted, fitted._frames((raw - fitted.mean) / fitted.std)

    def _frames(self, values: torch.Tensor) -> torch.Tensor:
        """Standardised log-mel ``(B, H, T*W)`` -> frames ``(B, T, 1, H, W)``."""
        frames = values.reshape(values.shape[0], self.height, self.timesteps, self.width)
        return frames.permute(0, 2, 1, 3).unsqueeze(2).contiguous()

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self._frames((self.log_mel(waveforms) - self.mean) / self.std)


def fix_length(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop or zero-pad a 1-D waveform (padding at the end).

    Parameters
    ----------
    waveform
        The samples.
    n_samples
        The length wanted.

    Returns
    -------
    numpy.ndarray
    """
    out = np.zeros(n_samples, dtype=np.float32)
    kept = min(n_samples, len(waveform))
    out[:kept] = waveform[:kept]
    return out


def clip_arrays(waveforms: list[np.ndarray], n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of natural length as one array of equal-length waveforms, and each clip's power.

    Parameters
    ----------
    waveforms
        1-D clips.
    n_samples
        The common length (clips are cropped or zero-padded).

    Returns
    -------
    waveforms : torch.Tensor
        ``(n, n_samples)`` float32.
    power : torch.Tensor
        ``(n,)`` float32: the mean square of what is kept of each clip, before padding (the
        signal power that audio SNRs refer to).
    """
    padded = torch.from_numpy(np.stack([fix_length(w, n_samples) for w in waveforms]))
    power = torch.tensor([float(np.mean(np.square(w[:n_samples], dtype=np.float64)))
                          for w in waveforms], dtype=torch.float32)
    return padded, power


def resize_images(images: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize images in [0, 1] (bilinear, antialiased).

    Parameters
    ----------
    images
        ``(N, h, w)``.
    height, width
        The new size.

    Returns
    -------
    torch.Tensor
        ``(N, height, width)`` float32.
    """
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.shape[1:] == (height, width):
        return images.clone()
    resized = F.interpolate(images[:, None], size=(height, width), mode="bilinear",
                            antialias=True, align_corners=False)
    return resized[:, 0].clamp_(0.0, 1.0)
