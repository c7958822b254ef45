from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from ml.data import load_folder, split_by_patient
from ml.errors import DataError


def _write_image(path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, dtype=np.uint8)).save(path)


def _make_folder(root, rows: list[dict]) -> None:
    """rows: {"file": "normal/a.png", "patient_id": ..., optional "split" and grades}."""
    for row in rows:
        _write_image(root / row["file"])
    columns = sorted({key for row in rows for key in row})
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_load_folder_uses_labels_csv_patients_split_and_disc_grades(tmp_path):
    _make_folder(
        tmp_path,
        [
            {"file": "normal/a.png", "patient_id": "p1", "suggested_split": "train", "pfirrmann_L3L4": 2,
             "pfirrmann_L4L5": 2, "pfirrmann_L5S1": 1},
            {"file": "ddd/b.png", "patient_id": "p2", "suggested_split": "val", "pfirrmann_L3L4": 2,
             "pfirrmann_L4L5": 4, "pfirrmann_L5S1": 3},
        ],
    )  # fmt: skip

    dataset = load_folder(tmp_path)

    assert dataset.split_source == "labels.csv"
    assert [(s.path.name, s.label, s.patient_id) for s in dataset.train] == [("a.png", 0, "p1")]
    assert dataset.val[0].disc_labels == (0, 1, 1)
    assert dataset.summary()["val"] == {"images": 1, "patients": 1, "normal": 0, "ddd": 1}


def test_load_folder_refuses_a_split_that_puts_a_patient_on_both_sides(tmp_path):
    _make_folder(
        tmp_path,
        [
            {"file": "normal/a.png", "patient_id": "p1", "split": "train"},
            {"file": "ddd/b.png", "patient_id": "p1", "split": "val"},
            {"file": "ddd/c.png", "patient_id": "p2", "split": "val"},
        ],
    )

    with pytest.raises(DataError, match=r"1 patient\(s\) on more than one side: p1 \(train/val\)"):
        load_folder(tmp_path)


def test_load_folder_refuses_a_partial_split(tmp_path):
    _make_folder(
        tmp_path,
        [
            {"file": "normal/a.png", "patient_id": "p1", "split": "train"},
            {"file": "ddd/b.png", "patient_id": "p2", "split": ""},
        ],
    )

    with pytest.raises(DataError, match="missing for 1"):
        load_folder(tmp_path)


def test_generated_split_is_by_patient_stratified_and_reproducible(tmp_path):
    for i in range(10):
        _write_image(tmp_path / "normal" / f"n{i}.png")
    for i in range(20):
        _write_image(tmp_path / "ddd" / f"d{i}_a.png")
        _write_image(tmp_path / "ddd" / f"d{i}_b.png")
    with (tmp_path / "labels.csv").open("w") as handle:
        handle.write("file,patient_id\n")
        for i in range(20):
            handle.write(f"ddd/d{i}_a.png,pd{i}\nddd/d{i}_b.png,pd{i}\n")

    first, second = load_folder(tmp_path, seed=3), load_folder(tmp_path, seed=3)

    assert first.split_source == "generated"
    assert [s.split for s in first.samples] == [s.split for s in second.samples]
    assert {s.patient_id for s in first.train}.isdisjoint({s.patient_id for s in first.val})
    assert sum(s.label == 0 for s in first.val) == 2 and sum(s.label == 1 for s in first.val) == 8


def test_split_by_patient_keeps_both_classes_in_a_tiny_folder(tmp_path):
    rows = [{"file": f"{c}/{c}{i}.png", "patient_id": f"{c}{i}"} for c in ("normal", "ddd") for i in range(2)]
    _make_folder(tmp_path, rows)

    samples = split_by_patient(load_folder(tmp_path).samples, val_fraction=0.1)

    assert {(s.label, s.split) for s in samples} == {(0, "train"), (0, "val"), (1, "train"), (1, "val")}


def test_unreadable_files_are_listed_and_counted(tmp_path):
    _write_image(tmp_path / "normal" / "a.png")
    _write_image(tmp_path / "ddd" / "b.png")
    (tmp_path / "ddd" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    dataset = load_folder(tmp_path)

    assert [u.path.name for u in dataset.unreadable] == ["broken.png"]
    assert dataset.summary()["unreadable"] == 1
    assert len(dataset.samples) == 2


def test_load_folder_errors_on_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_folder(tmp_path / "nowhere")


def test_load_folder_errors_when_there_are_no_images(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "notes.txt").write_text("no images here")

    with pytest.raises(DataError, match="no readable images"):
        load_folder(tmp_path)


def test_load_folder_errors_on_a_single_class(tmp_path):
    _write_image(tmp_path / "ddd" / "a.png")

    with pytest.raises(DataError, match="only one class"):
        load_folder(tmp_path)


def test_unknown_split_name_is_an_error(tmp_path):
    _make_folder(tmp_path, [{"file": "normal/a.png", "patient_id": "1", "split": "train"},
                            {"file": "ddd/b.png", "patient_id": "2", "split": "train"}])  # fmt: skip

    with pytest.raises(DataError, match="split 'test' has no images"):
        load_folder(tmp_path).subset("test")
