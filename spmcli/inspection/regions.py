"""Anomalous regions of an anomaly map, the binary defect mask, and the words
that say which feature makes a region anomalous.

A region is a connected component (8-connectivity) of the pixels whose
anomaly is above the pixel threshold. Each is explained by the feature that
sets its most anomalous patch apart from the good patch nearest to it (or, for
aligned images, from the good patches at the same position), in the units of
that feature, so that a person can check it on the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "MAX_REGIONS",
    "REGION_FEATURES",
    "Region",
    "defect_mask",
    "describe_deviation",
    "describe_orientation",
    "label_regions",
]

# Machine names a region's ``feature`` can take.
REGION_FEATURES = (
    "structure",
    "smoother",
    "texture_missing",
    "contrast",
    "code",
    "darker",
    "brighter",
    "orientation",
    "dark_line",
    "bright_line",
    "colour",
)
# The floor added to line strengths before their logarithm (features.py's _LOG_FLOOR).
LINE_STRENGTH_FLOOR = 2e-3
# A report lists at most this many regions per image, the strongest first.
MAX_REGIONS = 20


@dataclass(frozen=True)
class Region:
    """One anomalous region of an image.

    Attributes
    ----------
    bbox : tuple of int
        ``(x0, y0, x1, y1)`` in input pixels, end-exclusive: columns
        ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``.
    area : int
        Number of input pixels above the pixel threshold in the region.
    peak : float
        Largest anomaly in the region (the anomaly map's unit).
    mean : float
        Mean anomaly over the region's pixels.
    feature : str
        What drives it, one of :data:`REGION_FEATURES`: ``structure`` (the
        dictionary cannot rebuild it), ``smoother`` (less residual than good
        patches), ``texture_missing`` (too little contrast or texture),
        ``contrast`` (more contrast), ``code`` (unusually strong sparse code),
        ``darker`` / ``brighter`` (mean level), ``orientation`` (an oriented
        structure where good patches have another or none), ``dark_line`` /
        ``bright_line`` (thin dark or bright lines or spots).
    explanation : str
        The same in words, with the measured values, e.g.
        ``"structure: residual 6.1x the good patches'"``.
    """

    bbox: tuple[int, int, int, int]
    area: int
    peak: float
    mean: float
    feature: str
    explanation: str

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dictionary (bbox as a list)."""
        record = asdict(self)
        record["bbox"] = list(self.bbox)
        return record


def defect_mask(
    anomaly_map: np.ndarray, pixel_threshold: float, *, regions: Sequence[Region] | None = None
) -> np.ndarray:
    """Boolean mask of the pixels whose anomaly is above ``pixel_threshold``.

    With ``regions``, only the pixels inside one of their bounding boxes (the
    regions a report lists; an empty sequence gives an empty mask).
    """
    mask = np.asarray(anomaly_map) > pixel_threshold
    if regions is not None:
        keep = np.zeros_like(mask)
        for region in regions:
            x0, y0, x1, y1 = region.bbox
            keep[y0:y1, x0:x1] = True
        mask &= keep
    return mask


def label_regions(anomaly_map: np.ndarray, pixel_threshold: float) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """Connected components above the threshold, strongest peak first.

    Returns
    -------
    list of (mask, bbox)
        ``mask`` is the component's boolean mask inside ``bbox`` (its slice of
        the map), ``bbox`` is ``(x0, y0, x1, y1)``; at most :data:`MAX_REGIONS`.
    """
    mask = defect_mask(anomaly_map, pixel_threshold)
    if not mask.any():
        return []
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    slices = ndimage.find_objects(labels)
    # Per component, from the pixels above the threshold only (ndimage.maximum
    # with an index sorts every pixel of the map).
    peaks = np.full(count, -np.inf)
    np.maximum.at(peaks, labels[mask] - 1, np.asarray(anomaly_map)[mask])
    order = np.argsort(-np.asarray(peaks), kind="stable")[:MAX_REGIONS]
    found = []
    for index in order:
        rows, cols = slices[index]
        found.append((labels[rows, cols] == index + 1, (cols.start, rows.start, cols.stop, rows.stop)))
    return found


def _ratio(query: float, reference: float) -> float:
    return math.exp(query - reference)


def describe_deviation(name: str, query: float, reference: float, aligned: bool) -> tuple[str, str]:
    """The region feature and explanation for one deviating feature.

    Parameters
    ----------
    name : str
        The feature (see :data:`spmcli.inspection.features.FEATURE_NAMES`).
    query, reference : float
        The raw feature value of the anomalous patch and of the good reference
        (the nearest good patch, or the good images' mean at this position).
        For orientation features: the coherence vector's length.
    aligned : bool
        Whether the reference is the same position of the good images.

    Returns
    -------
    feature, explanation : str
    """
    goods = "the good patches at this position" if aligned else "the good patches"
    possessive = goods + "'"
    higher = query > reference
    if name == "structure":
        if higher:
            return "structure", f"structure: residual {_ratio(query, reference):.1f}x {possessive}"
        return "smoother", f"smoother than {goods}: residual {_ratio(query, reference):.2f}x theirs"
    if name in ("contrast", "code"):
        what = "contrast" if name == "contrast" else "sparse code (l1 norm)"
        if higher:
            feature = "contrast" if name == "contrast" else "code"
            return feature, f"more {what}: {_ratio(query, reference):.1f}x {possessive}"
        return "texture_missing", f"texture missing: {what} {_ratio(query, reference):.2f}x {possessive}"
    if name == "intensity":
        level = f"{abs(query) * 100:.0f}% {'above' if query > 0 else 'below'} the image's level"
        where = f"{reference * 100:+.0f}%"
        if higher:
            return "brighter", f"brighter than {goods}: {level} ({where} for them)"
        return "darker", f"darker than {goods}: {level} ({where} for them)"
    if name in ("dark_lines", "bright_lines"):
        tone = "dark" if name.startswith("dark") else "bright"
        # The line features are logarithms of the line strength, which is in
        # units of the image's level: about the line's contrast with its sides.
        strength, typical = (max(math.exp(value) - LINE_STRENGTH_FLOOR, 0.0) for value in (query, reference))
        than = "darker" if tone == "dark" else "brighter"
        if higher:
            return (
                f"{tone}_line",
                f"thin {tone} line: {100 * strength:.0f}% {than} than its sides ({100 * typical:.0f}% for {goods})",
            )
        return (
            "texture_missing",
            f"texture missing: fewer {tone} lines ({100 * strength:.0f}% where {goods} have {100 * typical:.0f}%)",
        )
    if name in ("dark_spots", "bright_spots"):
        tone = "dark" if name.startswith("dark") else "bright"
        if higher:
            return f"{tone}_line", f"small {tone} spot or line: top-hat {_ratio(query, reference):.1f}x {possessive}"
        return (
            "texture_missing",
            f"texture missing: fewer {tone} details (top-hat {_ratio(query, reference):.2f}x {possessive})",
        )
    if name in ("colour_red_green", "colour_blue_yellow"):
        # Chromaticities: 0 is the image's typical colour, 0.1 a tint of 10%
        # of the patch's level towards red (or yellow).
        toward = ("redder", "greener") if name == "colour_red_green" else ("yellower", "bluer")
        axis = "red-green" if name == "colour_red_green" else "blue-yellow"
        return (
            "colour",
            f"colour: {toward[0] if higher else toward[1]} than {goods} "
            f"({axis} {query:+.2f} where they have {reference:+.2f})",
        )
    raise ValueError(f"unknown feature {name!r}")


def _line_angle(vector: np.ndarray) -> float:
    """Direction (degrees from horizontal, 0..180) of the lines of a patch whose
    structure-tensor coherence vector is ``vector``: across the gradient."""
    gradient = 0.5 * math.degrees(math.atan2(float(vector[1]), float(vector[0])))
    return (gradient + 90.0) % 180.0


def describe_orientation(query: np.ndarray, reference: np.ndarray, aligned: bool) -> tuple[str, str]:
    """The region feature and explanation when the coherence vector deviates.

    Parameters
    ----------
    query, reference : ndarray, shape (2,)
        Coherence vectors (``orientation_x``, ``orientation_y``) of the
        anomalous patch and of its good reference.
    aligned : bool
        Whether the reference is the same position of the good images.
    """
    goods = "the good patches at this position" if aligned else "the good patches"
    strength, reference_strength = float(np.hypot(*query)), float(np.hypot(*reference))
    if strength + 0.1 < reference_strength:
        return (
            "texture_missing",
            f"orientation lost: coherence {strength:.2f} where {goods} have {reference_strength:.2f}",
        )
    line = f"lines at {_line_angle(query):.0f} deg (coherence {strength:.2f})"
    if reference_strength < 0.3:
        return "orientation", f"oriented structure: {line} where {goods} have no direction"
    return "orientation", f"unusual direction: {line} where {goods} run at {_line_angle(reference):.0f} deg"
