"""The series viewer in a real Chromium: a DICOM series uploaded at once shows as one series, the slider
scrolls its slices, window presets re-render the slice, and the slice on screen can be sent to the model."""

from __future__ import annotations

from diagnosis.models import Series
from tests.browser.test_case_workflow import log_in, shot
from tests.dicom_data import mr_series, write_series
from tests.factories import CaseFactory, ClinicianFactory


def test_series_upload_viewer_presets_and_slice_choice(live_server, browser_page, csp_violations, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    case = CaseFactory(owner=ClinicianFactory())
    paths = write_series(tmp_path / "series", mr_series(5))
    log_in(page, live_server.url, case.owner.username)
    page.goto(f"{live_server.url}/cases/{case.pk}/")

    page.get_by_label("Choose PNG, JPEG or DICOM files").set_input_files([str(path) for path in paths])
    page.get_by_role("button", name="Upload").click()

    expect(page.locator(".upload-item.ok")).to_have_count(5)
    expect(page.locator(".upload-item.ok").first).to_contain_text("Added to series T2 TSE SAG")
    card = page.locator(".series-card")
    expect(card).to_have_count(1)
    expect(card.get_by_role("alert")).to_contain_text("does not match this case's patient")
    expect(card.locator('[data-field="chosen-mark"]')).to_be_visible()
    expect(card.locator('[data-field="slice-number"]')).to_have_text("3")
    shot(page, "31-series-uploaded")

    series = Series.objects.get()
    first = series.slices.get(slice_index=0)
    card.locator(".slice-slider").fill("0")
    expect(card.locator('[data-field="slice-number"]')).to_have_text("1")
    expect(card.locator('[data-field="chosen-mark"]')).to_be_hidden()
    expect(card.locator("img.thumb")).to_have_attribute("src", f"/scans/{first.pk}/preview")

    card.get_by_role("button", name="Fluid and discs").click()
    expect(card.get_by_role("button", name="Fluid and discs")).to_have_attribute("aria-pressed", "true")
    expect(card.locator("img.thumb")).to_have_attribute("src", f"/scans/{first.pk}/preview?window=fluid")
    # Retried by Playwright's own script, not by wait_for_function: its polling goes through eval, which the
    # Content-Security-Policy (no unsafe-eval) refuses whenever the image is not loaded at the first check.
    expect(card.locator("img.thumb")).to_have_js_property("complete", True)
    expect(card.locator("img.thumb")).to_have_js_property("naturalWidth", 96)
    shot(page, "32-series-viewer-fluid-window")

    card.get_by_role("button", name="Run the prediction on this slice").click()
    expect(page.get_by_text("A prediction on slice 1 is queued.")).to_be_visible()
    series.refresh_from_db()
    assert series.chosen_scan == first and first.predictions.count() == 1
    assert csp_violations == []
