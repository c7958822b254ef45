"""Slice order and plane from ImagePositionPatient and ImageOrientationPatient."""

from __future__ import annotations

import math

from diagnosis.dicom.geometry import Plane, SliceGeometry, order_slices, series_plane

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _sagittal(x: float, number: int | None = None) -> SliceGeometry:
    return SliceGeometry(position=(x, -100.0, 50.0), orientation=SAGITTAL, instance_number=number)


def test_mid_slice_is_the_one_nearest_the_centre_of_the_extent_not_the_middle_index():
    # Uneven spacing: the middle index (the third of five) is 1 mm from one end, far from the centre.
    slices = [_sagittal(x) for x in (0.0, 1.0, 2.0, 20.0, 40.0)]

    order = order_slices(slices)

    assert order.by_geometry and order.middle == 3  # x = 20, the centre of 0..40


def test_order_follows_the_normal_not_the_instance_numbers():
    slices = [_sagittal(x, number) for x, number in ((8.0, 1), (0.0, 2), (4.0, 3))]

    order = order_slices(slices)

    # The normal of this orientation points to -x, so the slice at x = 8 comes first.
    assert order.order == [0, 2, 1] and order.positions == [-8.0, -0.0, -4.0]


def test_missing_geometry_on_one_slice_falls_back_to_instance_numbers():
    slices = [_sagittal(0.0, 3), SliceGeometry(None, None, 1), _sagittal(8.0, 2)]

    order = order_slices(slices)

    assert not order.by_geometry and order.order == [1, 2, 0] and order.middle == 2


def test_plane_is_named_after_the_patient_axis_nearest_the_normal_even_when_oblique():
    tilt = math.radians(20)
    oblique_axial = (1.0, 0.0, 0.0, 0.0, math.cos(tilt), -math.sin(tilt))

    assert series_plane([SliceGeometry((0, 0, 0), oblique_axial, 1)]) == Plane.AXIAL
    assert series_plane([_sagittal(0.0)]) == Plane.SAGITTAL
    assert series_plane([SliceGeometry(None, None, 1)]) == Plane.UNKNOWN
