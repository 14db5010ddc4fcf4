"""The pixel convention between the data pipeline and the VAE: uint8 ``[0, 255]`` on the host, ``[-1, 1]`` in
the model. Free of the pipeline's imports (Grain), so models can use it."""

from __future__ import annotations

import numpy as np


def to_signed_unit(video):
    """uint8 pixels -> float32 in [-1, 1] (numpy or jax arrays; float input is returned as it is)."""
    if video.dtype != np.uint8:
        return video
    return video.astype(np.float32) * (2.0 / 255.0) - 1.0
