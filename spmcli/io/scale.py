"""The 0..1 intensity scale every numeric function of spmcli works on, and the
checks that catch values meant for another scale.

Images are read as float on 0..1 (8-bit values divided by 255, 16-bit by
65535), and noise levels, weights and thresholds are given on the same scale
(``25 / 255`` for "sigma 25"). A 0..255 value passed by mistake does not fail
by itself: it ruins the result silently (K-SVD denoising with ``noise_sigma=25``
on a 0..1 image returns 23.5 dB instead of 29.6). These checks turn such
mistakes into a ``ValueError`` that names the expected scale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["require_unit_image", "require_unit_value"]

# Noisy images overshoot 0..1 by a few noise deviations; data on a 0..255 or
# 0..65535 scale goes far beyond these bounds.
_LOWEST = -1.0
_HIGHEST = 2.0


def require_unit_image(pixels: np.ndarray, name: str = "image") -> None:
    """Raise ``ValueError`` when ``pixels`` cannot be on the 0..1 scale.

    Examples
    --------
    >>> require_unit_image(np.array([[0.0, 1.1]]))
    >>> require_unit_image(np.array([[0.0, 255.0]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: image values span 0..255, but spmcli works on the 0..1 scale (divide 8-bit values by 255, ...)
    """
    pixels = np.asarray(pixels)
    if pixels.size == 0:
        return
    low, high = float(np.min(pixels)), float(np.max(pixels))
    if low < _LOWEST or high > _HIGHEST:
        raise ValueError(
            f"{name} values span {low:g}..{high:g}, but spmcli works on the 0..1 scale "
            "(divide 8-bit values by 255, 16-bit values by 65535)"
        )


def require_unit_value(value: float, name: str, *, limit: float = 1.0, typical: str = "") -> None:
    """Raise ``ValueError`` when ``value`` (a noise level, weight or threshold on
    the 0..1 scale) is above ``limit``: larger than anything meant for 0..1 data.

    Examples
    --------
    >>> require_unit_value(25 / 255, "noise_sigma")
    >>> require_unit_value(25, "noise_sigma")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: noise_sigma 25 is on the wrong scale: ... (25/255 = 0.098 if you meant 25 on the 0..255 scale)
    """
    if value > limit:
        hint = f"; {typical}" if typical else ""
        raise ValueError(
            f"{name} {value:g} is on the wrong scale: spmcli takes it on the 0..1 intensity scale "
            f"({value:g}/255 = {value / 255:.2g} if you meant {value:g} on the 0..255 scale){hint}"
        )
