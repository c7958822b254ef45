"""The case page's per-level findings: a table per prediction and the located discs drawn on the scan."""

from __future__ import annotations

from diagnosis.models import Prediction
from tests.factories import PredictionFactory, ScanFactory, add_levels, done_prediction


def test_case_page_shows_each_level_in_a_table_and_its_box_on_the_scan(client, clinician):
    prediction = done_prediction(clinician)
    client.force_login(clinician)

    html = client.get(f"/cases/{prediction.scan.case_id}/").content.decode()

    assert '<table class="levels small" data-field="levels">' in html
    for level in ("L3-L4", "L4-L5", "L5-S1"):
        assert f'<th scope="row">{level}</th>' in html
    assert '<svg class="level-boxes"' in html and 'viewBox="0 0 32 32"' in html
    assert '<rect x="8" y="13" width="16" height="6"' in html  # L4-L5
    assert "L4-L5 · 3" in html and "<td>0.90</td>" in html  # grade 3, P(degenerated)


def test_image_coordinates_are_written_as_numbers_whatever_the_locale_formats(client, clinician, settings):
    settings.USE_THOUSAND_SEPARATOR = True
    prediction = done_prediction(clinician)
    type(prediction.scan).objects.filter(pk=prediction.scan_id).update(width=2048, height=1536)
    prediction.levels.filter(level="L4-L5").update(box=[1024, 1013, 1424, 1100])
    client.force_login(clinician)

    html = client.get(f"/cases/{prediction.scan.case_id}/").content.decode()

    assert 'viewBox="0 0 2048 1536"' in html
    assert '<rect x="1024" y="1013" width="400" height="87"' in html


def test_boxes_come_from_the_newest_prediction_that_found_the_levels(client, clinician):
    older = done_prediction(clinician)
    newer = PredictionFactory(scan=older.scan, status="done", label="normal", probability=0.1)
    add_levels(newer, grades=(1, 2, 2))
    client.force_login(clinician)

    html = client.get(f"/cases/{older.scan.case_id}/").content.decode()

    boxes = html.split('<svg class="level-boxes"')[1].split("</svg>")[0]
    assert "L4-L5 · 2" in boxes and "L4-L5 · 3" not in boxes


def test_a_refused_scan_shows_why_and_no_levels(client, case, clinician):
    PredictionFactory(
        scan=ScanFactory(case=case),
        status=Prediction.Status.DONE,
        label=Prediction.Label.NOT_ASSESSABLE,
        reason="the discs are recognised better with the image turned: upside down or rotated",
    )
    client.force_login(clinician)

    html = client.get(f"/cases/{case.pk}/").content.decode()

    assert "Not assessable: the discs are recognised better with the image turned" in html
    assert '<svg class="level-boxes"' not in html and 'data-field="levels"' not in html
    status = client.get(f"/cases/{case.pk}/status.json").json()
    assert status["predictions"][0]["reason"].startswith("the discs are recognised")
