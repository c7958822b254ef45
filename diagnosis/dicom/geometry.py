"""Where the slices of a DICOM series lie: the plane they cut and their order along its normal.

Django-free: arrays and dataclasses in and out, like diagnosis.imaging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

# The patient axis nearest the slice normal names the plane; an oblique series is named after the nearest
# one, as a reader would call it. Patient axes (PS3.3 C.7.6.2.1.1): x to the left, y to the back, z up.
_PATIENT_AXES = ("sagittal", "coronal", "axial")


class Plane(StrEnum):
    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    AXIAL = "axial"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SliceGeometry:
    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient
    instance_number: int | None


@dataclass(frozen=True)
class SliceOrder:
    order: list[int]  # indices of the slices given, first to last
    positions: list[float | None]  # per slice given: its offset along the normal in mm, None without geometry
    middle: int  # index of the mid slice among the slices given
    by_geometry: bool  # False: ordered by InstanceNumber, the middle one chosen


def slice_normal(orientation: Sequence[float]) -> np.ndarray | None:
    row, column = np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def series_plane(slices: Sequence[SliceGeometry]) -> Plane:
    """The anatomical plane of the series, from the first slice's orientation; unknown without one."""
    orientation = next((s.orientation for s in slices if s.orientation is not None), None)
    normal = slice_normal(orientation) if orientation is not None else None
    if normal is None:
        return Plane.UNKNOWN
    return Plane(_PATIENT_AXES[int(np.argmax(np.abs(normal)))])


def order_slices(slices: Sequence[SliceGeometry]) -> SliceOrder:
    """Order the slices along the normal of ImageOrientationPatient and choose the one nearest the centre
    of their extent (the mid-sagittal slice of a sagittal series). Without complete geometry, order by
    InstanceNumber and take the middle instance."""
    if not slices:
        raise ValueError("a series has at least one slice")
    normal = _common_normal(slices)
    if normal is not None:
        positions = [float(np.dot(s.position, normal)) for s in slices]  # type: ignore[arg-type]
        order = sorted(range(len(slices)), key=lambda index: (positions[index], index))
        centre = (min(positions) + max(positions)) / 2
        middle = min(order, key=lambda index: abs(positions[index] - centre))
        return SliceOrder(order=order, positions=positions, middle=middle, by_geometry=True)
    order = sorted(
        range(len(slices)),
        key=lambda index: (slices[index].instance_number is None, slices[index].instance_number or 0, index),
    )
    return SliceOrder(
        order=order, positions=[None] * len(slices), middle=order[(len(order) - 1) // 2], by_geometry=False
    )


def _common_normal(slices: Sequence[SliceGeometry]) -> np.ndarray | None:
    """The slices' shared normal, or None when any lacks geometry or they are not parallel."""
    normals = []
    for geometry in slices:
        if geometry.position is None or geometry.orientation is None:
            return None
        normal = slice_normal(geometry.orientation)
        if normal is None:
            return None
        normals.append(normal)
    if any(abs(float(np.dot(normals[0], normal))) < 0.99 for normal in normals[1:]):
        return None
    return normals[0]
