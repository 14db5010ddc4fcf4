"""Image-quality metrics (PSNR, SSIM) and the metric writer (console progress bar + TensorBoard)."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-clip PSNR in dB of videos ``[B, ...]`` in [-1, 1] (peak-to-peak 2)."""
    mse = jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=tuple(range(1, x.ndim)))
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))


def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> jax.Array:
    r = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-clip SSIM (Gaussian 11x11, sigma 1.5, per channel, averaged over frames) of videos in [-1, 1]."""
    x = (x.astype(jnp.float32) + 1) / 2
    y = (y.astype(jnp.float32) + 1) / 2
    b = x.shape[0]
    x = x.reshape(-1, *x.shape[-3:])
    y = y.reshape(-1, *y.shape[-3:])
    g = _gaussian_kernel()
    c = x.shape[-1]

    def blur(a):  # separable Gaussian, 'VALID', per channel
        a = jnp.moveaxis(a, -1, 1).reshape(-1, 1, *a.shape[1:3])
        a = jax.lax.conv_general_dilated(a, g.reshape(1, 1, -1, 1), (1, 1), "VALID")
        a = jax.lax.conv_general_dilated(a, g.reshape(1, 1, 1, -1), (1, 1), "VALID")
        return a

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.reshape(b, -1, c, *s.shape[-2:]).mean(axis=(1, 2, 3, 4))


class MetricWriter:
    """Scalars to TensorBoard event files (``tensorboardX``, no TensorFlow) and images as PNG files."""

    def __init__(self, logdir: str | pathlib.Path, enabled: bool = True):
        self.logdir = pathlib.Path(logdir)
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.logdir / "tb"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, float(value), step)

    def image(self, step: int, name: str, image: np.ndarray) -> pathlib.Path:
        """Writes an HWC uint8 image as ``<logdir>/samples/<name>_<step>.png`` and to TensorBoard."""
        from PIL import Image

        path = self.logdir / "samples" / f"{name}_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        if self._tb is not None:
            self._tb.add_image(name, image, step, dataformats="HWC")
        return path

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def to_uint8(video: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(video, np.float32) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def comparison_strip(original: np.ndarray, reconstruction: np.ndarray, max_frames: int = 6) -> np.ndarray:
    """Two rows of frames (original above reconstruction) of one clip ``[T, H, W, 3]`` in [-1, 1]."""
    t = original.shape[0]
    picks = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    top = np.concatenate([to_uint8(original[i]) for i in picks], axis=1)
    bottom = np.concatenate([to_uint8(reconstruction[i]) for i in picks], axis=1)
    return np.concatenate([top, bottom], axis=0)
