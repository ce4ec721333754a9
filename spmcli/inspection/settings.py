"""The detector's settings: how images become patch descriptors and scores.

Kept apart from the detector so that features, density model and persistence
can share them without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "COLOUR_GROUPS",
    "EXPERTS",
    "FEATURE_GROUPS",
    "MODES",
    "POLARITIES",
    "WORKING_SIDE",
    "DetectorSettings",
    "expert_groups",
]

MODES = ("auto", "pooled", "aligned")
# Automatic downscale: the working image's smaller side stays at least this long.
WORKING_SIDE = 150
POLARITIES = ("both", "dark", "bright")
# Feature groups a descriptor can hold; each adds the features named in
# spmcli.inspection.features.FEATURE_NAMES for that group.
FEATURE_GROUPS = ("structure", "code", "contrast", "intensity", "orientation", "lines", "spots", "colour")
# Feature groups that need colour images: dropped when any good image is grey
# (see :func:`spmcli.inspection.features.has_colour`).
COLOUR_GROUPS = ("colour",)
# The density model's experts and the feature groups each watches ("joint": all
# of the descriptor's groups). The sparse model's residual and code belong
# together (Carrera, Boracchi et al. use them jointly).
EXPERTS = {
    "sparse": ("structure", "code"),
    "contrast": ("contrast",),
    "intensity": ("intensity",),
    "orientation": ("orientation",),
    "lines": ("lines",),
    "spots": ("spots",),
    "colour": ("colour",),
    "joint": FEATURE_GROUPS,
}


def expert_groups(experts: tuple[str, ...], features: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """The experts that watch at least one of ``features``, each with the groups it watches."""
    chosen = []
    for name in experts:
        groups = tuple(group for group in EXPERTS[name] if group in features)
        if groups and all(groups != other for _, other in chosen):
            chosen.append((name, groups))
    return chosen


@dataclass
class DetectorSettings:
    """How images are turned into patch descriptors, scores and decisions.

    Attributes
    ----------
    mode : {"auto", "pooled", "aligned"}
        ``"pooled"``: one model of good patches for every position (textures,
        unaligned parts, images of any size). ``"aligned"``: each feature is
        first compared with the good images at the same position (parts framed
        alike: cells, labels); an image of nearly the training size is read
        at the positions that correspond in proportion, one further off is
        resized to it first.
        ``"auto"`` (default): when the good images have one size, or sides
        within 10% of the median's (a part cut out by a fixture varies by a
        few pixels), both modes are fitted and 20 probe defects are drawn on
        the first calibration images (one each, or several each when there
        are fewer than 20)
        (:mod:`spmcli.inspection.probe_defects`); the mode that puts them
        further above its own threshold (geometric mean of their scores over
        the calibration images' ``threshold_quantile``) is kept. Good images
        of other sizes, or fewer than 3, are pooled.
    downscale : int or None
        Integer factor by which images are first reduced (area average).
        ``None`` (default): chosen when learning, the largest power of two
        that keeps the good images' median smaller side at least
        :data:`WORKING_SIDE` (150) pixels (1 for crops under 300 pixels, 2 for
        300-599, 4 for 600-1199...), so that patches see about the same share
        of any image.
    blur_sigma : float or None
        Gaussian blur of each working image, in working pixels: suppresses
        sensor noise and grain the decision should not depend on. ``None``
        (default): chosen when learning from the good images' noise
        (:func:`spmcli.inspection.features.blur_for_noise`): none on clean
        images, where it would only wash out thin scratches, cracks and
        spots, and 1 (the most) on images as grainy as the grass photograph
        (BENCHMARKS.md, "How much blur").
    n_scales : int
        Working scales (each half the previous).
    stride : int
        Step of the patch grid, in working pixels.
    sparsity : int
        Atoms per patch when coding.
    features : tuple of str
        Feature groups in each patch descriptor (see :data:`FEATURE_GROUPS`).
        The ``colour`` group is kept only when every good image is in
        colour; with any grey good image the detector works in grey alone.
    polarity : {"both", "dark", "bright"}
        Which brightness changes count as anomalous: a patch brighter than the
        good ones is not anomalous with ``"dark"`` (and conversely).
    line_length : float
        Standard deviation along the line (working pixels) of the oriented
        line filters of the ``lines`` features: lines about twice this long
        stand out of texture that is dark or bright only in short pieces.
        0 uses the isotropic Hessian ridge at scale 1 instead (the first
        release of this detector).
    experts : tuple of str
        The density model's experts (see :data:`EXPERTS`): each is a
        nearest-neighbour model of the good patches over some feature groups,
        its distances divided by those of held-out good patches; a patch's
        anomaly is the largest. Default: the ``joint`` model of all features
        (which knows which *combinations* are normal), a ``lines`` expert,
        so one long thin line is not drowned by the other features' spread
        (KolektorSDD dev AUROC 0.84 -> 0.92, BENCHMARKS.md), and a
        ``sparse`` expert, the sparse model's coding residual and code
        together (as in Carrera, Boracchi et al.), which the joint model's
        eleven features drown on textures unlike the ones the features were
        chosen on (moon +0.08 to +0.14 AUROC, two procedural textures +0.00
        to +0.02, ELPV mono -0.003 over both halves; BENCHMARKS.md), and,
        for colour images only, a ``colour`` expert, so a change of hue in
        two of thirteen features is not drowned either (a tint on the
        procedural terrazzo texture: AUROC 0.73-0.79 inside the joint model,
        1.00 with its own expert; BENCHMARKS.md). An expert whose features
        are absent (``colour`` on grey images) is left out.
    one_sided_experts : tuple of str
        Experts that only count values above the good level (a line that is
        there and should not be; a *missing* line is the joint model's
        business, as "texture missing").
    held_out_quantile : float
        Each expert's distances are divided by this quantile of the distances
        of held-out good patches (3-fold over the good images), so 1 is as
        unusual as the rarest good patch in about ``1 / (1 - q)``.
    bank_rare_share : float
        Share of the memory bank given to the good descriptors farthest from
        a random sample (rare but normal patches), see
        :func:`spmcli.inspection.density.thin_bank`.
    n_neighbours : int
        The density model's anomaly is the mean distance to this many nearest
        good descriptors.
    bank_size : int
        At most this many good descriptors per scale are kept (seeded thinning).
    score_power : float
        The image score is the power mean of the anomaly map with this
        exponent (:func:`spmcli.inspection.calibration.image_score`);
        ``math.inf`` (recorded as ``null``) makes it the map's maximum, as
        detector format 4 did. 8 was chosen on ELPV alone and then measured on
        the other sets (BENCHMARKS.md): it lifts most, because a good image's
        one stray pixel counts less than a defect's patch or two.
    threshold_quantile : float
        The image threshold is this quantile of the calibration images'
        scores, and the pixel threshold the same quantile of their maps'
        maxima: 0.95 means about 5% of good images are flagged, by design.
    """

    mode: str = "auto"
    downscale: int | None = None
    blur_sigma: float | None = None
    n_scales: int = 2
    stride: int = 4
    sparsity: int = 2
    features: tuple[str, ...] = FEATURE_GROUPS
    polarity: str = "both"
    line_length: float = 6.0
    experts: tuple[str, ...] = ("joint", "lines", "sparse", "colour")
    one_sided_experts: tuple[str, ...] = ("lines",)
    held_out_quantile: float = 0.9999
    n_neighbours: int = 1
    bank_size: int = 20000
    bank_rare_share: float = 0.5
    score_power: float = 8.0
    threshold_quantile: float = 0.95

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {self.polarity!r}")
        if self.downscale is not None and (
            isinstance(self.downscale, bool) or not isinstance(self.downscale, int) or self.downscale < 1
        ):
            raise ValueError(f"downscale must be a positive integer or None, got {self.downscale!r}")
        positive = ("n_scales", "stride", "sparsity", "n_neighbours", "bank_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.features = tuple(self.features)
        unknown = [name for name in self.features if name not in FEATURE_GROUPS]
        if unknown or not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(
                f"features must be distinct names among {', '.join(FEATURE_GROUPS)}, got {', '.join(self.features)}"
            )
        # Canonical order, so equal settings give equal descriptors and files.
        self.features = tuple(name for name in FEATURE_GROUPS if name in self.features)
        if not 0 < self.threshold_quantile <= 1:
            raise ValueError(f"threshold_quantile must be in (0, 1], got {self.threshold_quantile}")
        self.experts = tuple(self.experts)
        self.one_sided_experts = tuple(self.one_sided_experts)
        for name in ("experts", "one_sided_experts"):
            chosen = getattr(self, name)
            if any(expert not in EXPERTS for expert in chosen) or len(set(chosen)) != len(chosen):
                raise ValueError(f"{name} must be distinct names among {', '.join(EXPERTS)}, got {', '.join(chosen)}")
        if not expert_groups(self.experts, self.features):
            raise ValueError("no expert watches any of the chosen features")
        if not 0 < self.held_out_quantile < 1:
            raise ValueError(f"held_out_quantile must be in (0, 1), got {self.held_out_quantile}")
        if not self.line_length >= 0:
            raise ValueError(f"line_length must be >= 0, got {self.line_length}")
        if not 0 <= self.bank_rare_share <= 1:
            raise ValueError(f"bank_rare_share must be in [0, 1], got {self.bank_rare_share}")
        if isinstance(self.score_power, bool) or not self.score_power >= 1:
            raise ValueError(f"score_power must be >= 1 (inf for the maximum), got {self.score_power!r}")
        self.score_power = float(self.score_power)
        if self.blur_sigma is not None:
            if isinstance(self.blur_sigma, bool) or not self.blur_sigma >= 0:
                raise ValueError(f"blur_sigma must be >= 0 or None, got {self.blur_sigma!r}")
            self.blur_sigma = float(self.blur_sigma)

    def resolved(self, image_sides: list[int]) -> DetectorSettings:
        """These settings with an automatic ``downscale`` chosen for images
        whose smaller sides are ``image_sides`` (see the attribute)."""
        if self.downscale is not None:
            return self
        side = float(np.median(image_sides)) if image_sides else 0.0
        factor = 1
        while side / (2 * factor) >= WORKING_SIDE:
            factor *= 2
        return replace(self, downscale=factor)

    def without_colour(self) -> DetectorSettings:
        """These settings without the feature groups that need colour images."""
        features = tuple(group for group in self.features if group not in COLOUR_GROUPS)
        return self if features == self.features else replace(self, features=features)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready copy (for the model's metadata and reports)."""
        record = asdict(self)
        record["features"] = list(self.features)
        record["experts"] = list(self.experts)
        record["one_sided_experts"] = list(self.one_sided_experts)
        if math.isinf(self.score_power):
            record["score_power"] = None  # JSON has no infinity
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DetectorSettings:
        """Inverse of :meth:`to_record` (validated)."""
        known = {key: record[key] for key in cls.__dataclass_fields__ if key in record}
        for name in ("features", "experts", "one_sided_experts"):
            if name in known:
                known[name] = tuple(known[name])
        if "score_power" in known and known["score_power"] is None:
            known["score_power"] = math.inf
        return cls(**known)
