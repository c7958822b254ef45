"""Labelled image folders: ``normal/`` and ``ddd/`` class subfolders plus an optional ``labels.csv``.

``labels.csv`` (optional) maps each file (``file`` relative to the folder, or a bare file name) to its
``patient_id``, a split (``suggested_split`` or ``split``) and per-disc Pfirrmann grades
(``pfirrmann_L3L4``, ``pfirrmann_L4L5``, ``pfirrmann_L5S1``). Files without a patient id count as their
own patient. When no split is given the folder is split by patient, stratified by class, with a fixed
seed. A split that puts one patient on both sides is refused.

An optional ``yolo_labels/`` folder (``cls cx cy w h`` per line, normalised) gives disc boxes
(``read_disc_boxes``), from which ``ml.levels.discs`` takes the L3-L4, L4-L5 and L5-S1 boxes.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml.errors import DataError, ImageError
from ml.preprocessing import load_grayscale

CLASSES = ("normal", "ddd")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DISC_COLUMNS = ("pfirrmann_L3L4", "pfirrmann_L4L5", "pfirrmann_L5S1")
SPLIT_COLUMNS = ("split", "suggested_split")
DEFAULT_SEED = 20240601
DEGENERATE_GRADE = 3
# YOLO classes that mark an intervertebral disc: DDD disc, normal disc, lumbar disc bulge.
DISC_BOX_CLASSES = (0, 1, 4)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 = ddd, 0 = normal
    patient_id: str
    split: str | None = None
    disc_grades: tuple[int, int, int] | None = None

    @property
    def disc_labels(self) -> tuple[int, int, int] | None:
        """Per-disc targets (Pfirrmann >= 3) for L3-L4, L4-L5, L5-S1, or None when grades are unknown."""
        if self.disc_grades is None:
            return None
        return tuple(int(grade >= DEGENERATE_GRADE) for grade in self.disc_grades)


@dataclass(frozen=True)
class UnreadableFile:
    path: Path
    reason: str


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]
    unreadable: list[UnreadableFile] = field(default_factory=list)
    split_source: str = "none"  # "labels.csv", "generated" or "none"

    @property
    def train(self) -> list[Sample]:
        return self.subset("train")

    @property
    def val(self) -> list[Sample]:
        return self.subset("val")

    @property
    def split_names(self) -> list[str]:
        return sorted({s.split for s in self.samples if s.split is not None})

    def subset(self, name: str) -> list[Sample]:
        """Samples of split ``name``; DataError if the folder has no such split."""
        chosen = [s for s in self.samples if s.split == name]
        if not chosen:
            available = ", ".join(self.split_names) or "none"
            raise DataError(f"split {name!r} has no images in {self.root} (splits: {available})")
        return chosen

    def summary(self) -> dict:
        def counts(samples: Sequence[Sample]) -> dict:
            return {
                "images": len(samples),
                "patients": len({s.patient_id for s in samples}),
                "normal": sum(1 for s in samples if s.label == 0),
                "ddd": sum(1 for s in samples if s.label == 1),
            }

        result = {
            "root": self.root.name,
            "split_source": self.split_source,
            "all": counts(self.samples),
            "unreadable": len(self.unreadable),
        }
        for name in self.split_names:
            result[name] = counts(self.subset(name))
        return result


def _read_labels_csv(path: Path) -> dict[str, dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise DataError(f"{path} must have a 'file' column")
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                name = (row.get("file") or "").strip().replace("\\", "/")
                if name:
                    rows[name] = row
                    rows.setdefault(Path(name).name, row)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _parse_grades(row: dict[str, str], path: Path) -> tuple[int, int, int] | None:
    values = [(row.get(column) or "").strip() for column in DISC_COLUMNS]
    if not all(values):
        return None
    try:
        return tuple(int(float(v)) for v in values)
    except ValueError as exc:
        raise DataError(f"labels.csv: non-numeric Pfirrmann grade for {path.name}: {values}") from exc


def _split_of(row: dict[str, str] | None) -> str | None:
    if row is None:
        return None
    for column in SPLIT_COLUMNS:
        value = (row.get(column) or "").strip()
        if value:
            return value
    return None


def check_no_patient_leak(samples: Iterable[Sample]) -> None:
    """Raise DataError if any patient has images in more than one split."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for sample in samples:
        if sample.split is not None:
            splits_of[sample.patient_id].add(sample.split)
    leaking = sorted(pid for pid, splits in splits_of.items() if len(splits) > 1)
    if leaking:
        shown = ", ".join(f"{pid} ({'/'.join(sorted(splits_of[pid]))})" for pid in leaking[:10])
        more = f" and {len(leaking) - 10} more" if len(leaking) > 10 else ""
        raise DataError(f"split puts {len(leaking)} patient(s) on more than one side: {shown}{more}")


def split_by_patient(
    samples: Sequence[Sample], *, val_fraction: float = 0.2, seed: int = DEFAULT_SEED
) -> list[Sample]:
    """Assign ``train``/``val`` by patient, stratified by each patient's class (DDD if any image is)."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError("val_fraction must be between 0 and 1")
    patient_label: dict[str, int] = defaultdict(int)
    for sample in samples:
        patient_label[sample.patient_id] = max(patient_label[sample.patient_id], sample.label)
    rng = random.Random(seed)
    val_patients: set[str] = set()
    for label in (0, 1):
        patients = sorted(pid for pid, lab in patient_label.items() if lab == label)
        rng.shuffle(patients)
        n_val = int(round(len(patients) * val_fraction))
        if len(patients) >= 2:
            n_val = min(max(n_val, 1), len(patients) - 1)
        val_patients.update(patients[:n_val])
    return [
        Sample(
            s.path, s.label, s.patient_id, "val" if s.patient_id in val_patients else "train", s.disc_grades
        )
        for s in samples
    ]


def load_folder(
    path: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = DEFAULT_SEED,
    verify_images: bool = True,
    require_both_classes: bool = True,
) -> Dataset:
    """Load a labelled folder. Unreadable images are listed in ``Dataset.unreadable``, not in ``samples``.

    Raises DataError for a missing folder, no images, a single class, a partial or leaking split.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data folder not found: {path}")
    labels_path = root / "labels.csv"
    rows = _read_labels_csv(labels_path) if labels_path.is_file() else {}

    samples: list[Sample] = []
    unreadable: list[UnreadableFile] = []
    for label, class_name in enumerate(CLASSES):
        class_dir = root / class_name
        if not class_dir.is_dir():
            continue
        for file in sorted(class_dir.iterdir()):
            if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if verify_images:
                try:
                    load_grayscale(file)
                except ImageError as exc:
                    unreadable.append(UnreadableFile(file, str(exc)))
                    continue
            row = rows.get(f"{class_name}/{file.name}") or rows.get(file.name)
            patient = (row or {}).get("patient_id", "").strip() or file.stem
            grades = _parse_grades(row, file) if row else None
            samples.append(Sample(file, label, patient, _split_of(row), grades))

    if not samples:
        found = f" ({len(unreadable)} unreadable)" if unreadable else ""
        raise DataError(
            f"no readable images in {root}{found}: expected PNG/JPEG files in "
            f"{' and '.join(c + '/' for c in CLASSES)} subfolders"
        )
    present = {CLASSES[s.label] for s in samples}
    if require_both_classes and len(present) < 2:
        raise DataError(f"only one class in {root} ({present.pop()}); both normal/ and ddd/ are needed")

    with_split = sum(1 for s in samples if s.split is not None)
    if with_split == len(samples):
        check_no_patient_leak(samples)
        split_source = "labels.csv"
    elif with_split == 0:
        samples = (
            split_by_patient(samples, val_fraction=val_fraction, seed=seed) if len(present) == 2 else samples
        )
        split_source = "generated" if len(present) == 2 else "none"
    else:
        missing = [s.path.name for s in samples if s.split is None]
        raise DataError(
            f"labels.csv gives a split for {with_split} of {len(samples)} images; "
            f"missing for {len(missing)}, e.g. {', '.join(missing[:5])}"
        )
    return Dataset(root, samples, unreadable, split_source)


def read_disc_boxes(sample: Sample, root: Path) -> np.ndarray | None:
    """Disc boxes of one image from ``root/yolo_labels/<stem>.txt`` as (N, 4) [cx, cy, w, h], or None."""
    path = root / "yolo_labels" / f"{sample.path.stem}.txt"
    if not path.is_file():
        return None
    boxes = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and int(float(parts[0])) in DISC_BOX_CLASSES:
            boxes.append([float(v) for v in parts[1:]])
    return np.array(boxes, dtype=np.float64).reshape(-1, 4) if boxes else None


def load_images(samples: Sequence[Sample]) -> list[np.ndarray]:
    """Decode every sample (raises ImageError naming the file if one became unreadable)."""
    images = []
    for sample in samples:
        try:
            images.append(load_grayscale(sample.path))
        except ImageError as exc:
            raise ImageError(f"{sample.path}: {exc}") from exc
    return images
