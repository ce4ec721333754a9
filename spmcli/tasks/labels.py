"""Labelled images for ``detect --labels [--ground-truth-masks]``: reading the
labels file, matching it to the inputs, and evaluating the finished records."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpmcliError
from ..inspection.evaluation import aupro, auroc_per_type, image_metrics, pixel_auroc
from ..io.images import IMAGE_EXTENSIONS

__all__ = ["Label", "evaluate", "find_ground_truth", "match_labels", "read_labels", "unused_labels"]

_TRUE = {"1", "true", "yes", "defective", "bad"}
_FALSE = {"0", "false", "no", "good", "ok"}


@dataclass(frozen=True)
class Label:
    """One row of a labels file: is the image defective, and of which type (if named)."""

    path: str
    defective: bool
    defect_type: str | None = None


def read_labels(path: str | Path) -> list[Label]:
    """Rows of a CSV with columns ``path`` and ``defective`` (1/0, true/false, yes/no),
    optionally ``defect_type``. Relative paths are taken from the CSV's folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SpmcliError(f"cannot read the labels file ({error})", path) from None
    if not rows or not {"path", "defective"} <= set(rows[0]):
        raise SpmcliError("a labels file needs the columns 'path' and 'defective' (and optionally 'defect_type')", path)
    labels = []
    lines: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        value = (row.get("defective") or "").strip().lower()
        if value not in _TRUE | _FALSE:
            raise SpmcliError(f"line {number}: 'defective' must be 1/0, true/false or yes/no, got {value!r}", path)
        where = Path((row.get("path") or "").strip())
        where = where if where.is_absolute() else path.parent / where
        key = os.path.normcase(os.path.abspath(where))
        if key in lines:
            # Two labels for one image: which one holds is a guess, so neither is taken.
            raise SpmcliError(f"line {number}: {where} is labelled twice (also on line {lines[key]})", path)
        lines[key] = number
        kind = (row.get("defect_type") or "").strip() or None
        labels.append(Label(str(where), value in _TRUE, kind))
    return labels


def match_labels(inputs: list[Path], labels: list[Label]) -> list[Label | None]:
    """Each input's label: the row naming the same file, else the only row with its file name."""
    by_path = {str(Path(label.path).resolve()): label for label in labels}
    by_name: dict[str, list[Label]] = {}
    for label in labels:
        by_name.setdefault(Path(label.path).name, []).append(label)
    matched = []
    for path in inputs:
        label = by_path.get(str(path.resolve()))
        if label is None and len(by_name.get(path.name, [])) == 1:
            label = by_name[path.name][0]
        matched.append(label)
    return matched


def unused_labels(labels: list[Label], matched: list[Label | None]) -> list[Label]:
    """The rows of ``labels`` that :func:`match_labels` gave to no input (a
    path mistyped, or an image not among the inputs), in file order."""
    used = {id(label) for label in matched if label is not None}
    return [label for label in labels if id(label) not in used]


def find_ground_truth(folder: str | Path, image: Path) -> str | None:
    """The mask named like ``image`` in ``folder`` (same name, or the same stem with
    any image extension, or ``<stem>_mask``), or None: a defect-free image has none."""
    folder = Path(folder)
    for name in (image.name, *(image.stem + ext for ext in IMAGE_EXTENSIONS),
                 *(f"{image.stem}_mask{ext}" for ext in IMAGE_EXTENSIONS)):  # fmt: skip
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    return None


def evaluate(records: list[dict], labels: list[Label | None], threshold: float) -> dict:
    """Image metrics (and pixel metrics where records hold evaluation maps) of scored, labelled records.

    Returns
    -------
    dict
        ``n_labelled``, ``n_defective``, ``image`` (AUROC, AP, accuracy,
        precision, recall, F1 at ``threshold``), ``auroc_per_type`` when
        labels name types, and ``pixel_auroc``, ``aupro`` (up to 30% false
        positive rate) and ``n_masks`` with ground-truth masks.
    """
    used = [(record, label) for record, label in zip(records, labels, strict=True)
            if label is not None and record["status"] == "done"]  # fmt: skip
    if not used:
        return {"n_labelled": 0, "note": "no scored input has a label"}
    truth = np.array([label.defective for _, label in used])
    scores = np.array([record["score"] for record, _ in used])
    result: dict = {"n_labelled": len(used), "n_defective": int(truth.sum())}
    if truth.all() or not truth.any():
        result["note"] = "image metrics need both defective and good labelled images"
        return result
    result["image"] = image_metrics(truth, scores, threshold).to_record()
    types = [label.defect_type if label.defective else None for _, label in used]
    if any(types):
        result["auroc_per_type"] = auroc_per_type(truth, scores, types)
    with_masks = [(record, label) for record, label in used if "evaluation_map" in record]
    if with_masks:
        maps = [record["evaluation_map"] for record, _ in with_masks]
        masks = [record["evaluation_mask"] for record, _ in with_masks]
        if any(mask.any() for mask in masks) and not all(mask.all() for mask in masks):
            result["pixel_auroc"] = pixel_auroc(maps, masks)
            result["aupro"] = aupro(maps, masks, max_fpr=0.3)
        result["n_masks"] = sum(1 for mask in masks if mask.any())
    return result
