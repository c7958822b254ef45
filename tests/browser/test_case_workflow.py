"""A clinician's whole round trip in a real Chromium: log in, register a patient, open a case, upload an
MRI slice, watch the worker's prediction arrive without reloading, look at the heatmap and review it."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from diagnosis.models import CaseReport, Prediction, PredictionLevel, Referral, Review
from tests.factories import (
    CaseFactory,
    ClinicianFactory,
    ModelVersionFactory,
    PredictionFactory,
    ScanFactory,
    done_prediction,
    png_bytes,
)

pytestmark = pytest.mark.worker

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"


DROP_FILES = """async (files) => {
    const transfer = new DataTransfer();
    for (const [name, type, base64] of files) {
        const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], name, { type }));
    }
    return transfer;
}"""


def mri_samples() -> list[Path]:
    for folder in (
        REPO_ROOT / "tests" / "data" / "sudirman_sample" / "normal",
        REPO_ROOT.parent / "shared" / "data" / "sudirman_midsag_t2" / "normal",
    ):
        images = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if len(images) >= 2:
            return images
    pytest.skip("No MRI sample: neither tests/data/sudirman_sample nor ../shared/data is present.")


# Each document reports what its Content-Security-Policy blocked to the console, where the test collects it.
REPORT_CSP_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (event) => {
    const blocked = event.blockedURI || "inline code";
    console.error("CSP violation: " + event.violatedDirective + " blocked " + blocked);
});"""


_EMPTIED: list[bool] = []


@pytest.fixture(scope="session")
def screenshots_folder() -> Path:
    """Emptied once per run, so each test's screenshots sit beside the others'. This module and the
    folder's conftest both define the fixture (each a session fixture of its own), so the flag keeps
    the second from emptying what the first module's tests wrote."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if not _EMPTIED:
        for stale in SCREENSHOTS.glob("*.png"):
            stale.unlink()
        _EMPTIED.append(True)
    return SCREENSHOTS


@pytest.fixture
def browser_page(monkeypatch, screenshots_folder):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium package.")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes are still
    # plain synchronous calls, so Django's async-safety guard is lifted for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        page.add_init_script(REPORT_CSP_VIOLATIONS)
        yield page
        browser.close()


@pytest.fixture
def csp_violations(browser_page) -> list[str]:
    """Console messages about the Content-Security-Policy: Chromium's own and those of the listener above."""
    messages: list[str] = []

    def collect(message) -> None:
        if "Content Security Policy" in message.text or message.text.startswith("CSP violation"):
            messages.append(message.text)

    browser_page.on("console", collect)
    return messages


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def agree(scope) -> None:
    """Agree with the model: a prediction without levels has an Agree choice; one with levels is
    confirmed by saving every level's grade as preset, the model's."""
    if scope.get_by_label("Agree").count():
        scope.get_by_label("Agree").check()


def test_clinician_uploads_a_scan_and_reviews_the_live_prediction(
    live_server, start_worker, active_model, browser_page, csp_violations
):
    from playwright.sync_api import expect

    page = browser_page
    clinician = ClinicianFactory()
    worker = start_worker()

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(clinician.username)
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "01-login")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    shot(page, "02-worklist")

    page.get_by_role("link", name="Patients", exact=True).click()
    page.get_by_role("link", name="New patient").click()
    page.get_by_label("Identifier").fill("MRN-BROWSER-1")
    page.get_by_label("Name").fill("Browser Test")
    page.get_by_role("button", name="Register patient").click()
    expect(page.get_by_role("heading", name="Patient MRN-BROWSER-1")).to_be_visible()
    shot(page, "03-patient")

    page.get_by_label("Clinical question").fill("Chronic low back pain: disc degeneration?")
    page.get_by_role("button", name="Open case").click()
    expect(page.get_by_role("heading", name="Case")).to_be_visible()

    page.evaluate("window.stillTheSamePage = true")
    page.get_by_label("Choose PNG, JPEG or DICOM files").set_input_files(str(mri_samples()[0]))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".upload-item.ok")).to_contain_text("Uploaded; prediction queued")
    prediction = page.locator(".prediction").first
    expect(prediction).to_be_visible()
    shot(page, "04-uploaded")

    try:
        expect(prediction).to_have_attribute("data-status", "done", timeout=180_000)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{worker.output()[-3000:]}") from None
    assert page.evaluate("window.stillTheSamePage") is True, "the page reloaded"
    label = prediction.locator('[data-field="label"]').inner_text()
    assert label in {"Normal", "Degenerative disc disease"}
    expect(prediction.locator('[data-field="probability"]')).to_contain_text("P(DDD)")
    # The grade of each disc level in a table, and the discs the model found drawn on the scan.
    expect(prediction.locator('[data-field="levels"] tbody tr')).to_have_count(3)
    expect(page.locator("svg.level-boxes rect")).to_have_count(3)
    expect(page.locator("#sign-off-blockers")).to_contain_text("1 prediction not reviewed")
    shot(page, "05-prediction-done")

    page.get_by_role("button", name="Show heatmap").click()
    expect(page.get_by_role("button", name="Hide heatmap")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("img.thumb")).to_have_attribute(
        "src", f"/predictions/{prediction.get_attribute('data-prediction-id')}/heatmap"
    )
    # decode() settles once the heatmap has loaded. wait_for_function would poll through eval, which the
    # Content-Security-Policy refuses whenever the image was not already there on its first check.
    loaded_width = page.locator("img.thumb").evaluate(
        "async (img) => { await img.decode(); return img.naturalWidth; }"
    )
    assert loaded_width > 0
    shot(page, "06-heatmap")

    agree(page)
    page.get_by_label("Comment").fill("Consistent with the images.")
    page.get_by_role("button", name="Save review").click()
    expect(page.locator(".review-done")).to_contain_text(f"Reviewed by {clinician.username}: agree")
    shot(page, "07-reviewed")

    second = mri_samples()[1]
    dropped = [
        ["notes.txt", "text/plain", base64.b64encode(b"not an image").decode()],
        [second.name, "image/png", base64.b64encode(second.read_bytes()).decode()],
    ]
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": page.evaluate_handle(DROP_FILES, dropped)})
    expect(page.locator(".upload-item.failed")).to_contain_text("notes.txt")
    expect(page.locator(".upload-item.failed [role=alert]")).to_contain_text("not a PNG, JPEG or DICOM")
    expect(page.locator(".upload-item.ok")).to_contain_text(second.name)
    expect(page.locator(".scan-card")).to_have_count(2)
    expect(page.locator('.prediction[data-status="done"]')).to_have_count(2, timeout=180_000)
    shot(page, "08-dropped-files")
    review = Review.objects.get()
    assert (review.reviewer_id, review.decision, review.comment) == (
        clinician.pk,
        "agree",
        "Consistent with the images.",
    )

    page.get_by_role("link", name="Worklist").click()
    expect(page.locator("#count-review")).to_have_text("1")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    shot(page, "09-worklist")
    page.get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name=f"{active_model.name} Active")).to_be_visible()
    expect(page.get_by_text("0 of 1 review", exact=True)).to_be_visible()
    shot(page, "10-models")
    page.set_viewport_size({"width": 390, "height": 844})
    page.go_back()
    shot(page, "11-worklist-phone")
    assert csp_violations == []


def test_api_docs_render_under_the_content_security_policy(live_server, browser_page, csp_violations):
    from playwright.sync_api import expect

    page = browser_page
    log_in(page, live_server.url, ClinicianFactory().username)
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Lumbar platform API")
    page.get_by_role("button", name="GET /api/v1/patients/", exact=False).first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
    shot(page, "12-api-docs")
    assert csp_violations == []


def test_owner_refers_a_case_for_a_second_opinion_and_withdraws_it(live_server, browser_page, csp_violations):
    """Clinician A refers a case to B with a note; B finds it in the worklist, records an opinion and
    cannot touch the case; A sees both opinions side by side and withdraws the referral, which ends B's
    access."""
    from playwright.sync_api import expect

    owner, colleague = ClinicianFactory(), ClinicianFactory()
    prediction = done_prediction(owner)
    case = prediction.scan.case
    page = browser_page
    log_in(page, live_server.url, owner.username)
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    agree(page)
    page.get_by_role("button", name="Save review").click()
    page.get_by_label("Colleague's username").fill(colleague.username)
    page.get_by_label("Note for the colleague").fill("Is L4-L5 really degenerate?")
    page.get_by_role("button", name="Refer for a second opinion").click()
    expect(page.locator(".referral")).to_contain_text(f"Referred to {colleague.username}")
    shot(page, "13-referral-made")

    other = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    other.add_init_script(REPORT_CSP_VIOLATIONS)
    log_in(other, live_server.url, colleague.username)
    referred = other.locator("#referred")
    expect(referred).to_contain_text("Is L4-L5 really degenerate?")
    shot(other, "14-worklist-referred-to-me")
    referred.get_by_role("link", name=f"Case {case.pk}").click()
    expect(other.locator("#referral-banner")).to_contain_text(f"Referred to you by {owner.username}")
    expect(other.locator("#upload-form")).to_have_count(0)
    expect(other.get_by_role("button", name="Re-run")).to_have_count(0)
    other.get_by_label("L4-L5", exact=True).select_option("2")
    other.get_by_label("Comment").fill("Disc signal preserved.")
    other.get_by_role("button", name="Save opinion").click()
    expect(other.locator(".second-opinion")).to_contain_text("Disc signal preserved.")
    shot(other, "15-second-opinion-recorded")

    page.reload()
    opinions = page.locator('[data-field="opinions"]')
    expect(opinions.locator(".case-review")).to_contain_text(f"Reviewed by {owner.username}: agree")
    expect(opinions.locator(".second-opinion")).to_contain_text(f"By {colleague.username}: override")
    shot(page, "16-opinions-side-by-side")
    page.get_by_role("button", name=f"Withdraw referral to {colleague.username}").click()
    expect(page.locator(".referral.withdrawn")).to_contain_text("Withdrawn")
    expect(page.locator("#timeline")).to_contain_text(f"Referral {Referral.objects.get().pk} withdrawn")
    shot(page, "17-referral-withdrawn")

    assert other.goto(f"{live_server.url}/cases/{case.pk}/").status == 404
    other.goto(f"{live_server.url}/")
    expect(other.locator("#referred")).to_contain_text("No case is referred to you.")
    shot(other, "18-access-ended")
    assert Review.objects.filter(kind=Review.Kind.SECOND_OPINION).count() == 1
    assert csp_violations == []


def scan_from(path: Path, case):
    """A scan of a real MRI slice, stored as the upload service would store a PNG."""
    import hashlib

    from django.core.files.base import ContentFile
    from PIL import Image

    content = path.read_bytes()
    width, height = Image.open(path).size
    digest = hashlib.sha256(content).hexdigest()
    return ScanFactory(
        case=case,
        original_name=path.name,
        sha256=digest,
        width=width,
        height=height,
        file=ContentFile(content, name=f"{digest}.png"),
    )


def pdf_text(path: Path) -> str:
    import subprocess

    return " ".join(
        subprocess.run(
            ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
        ).stdout.split()
    )


def test_clinician_signs_off_reopens_with_a_reason_and_downloads_both_reports(
    live_server, browser_page, csp_violations, tmp_path
):
    from django.core.files.base import ContentFile
    from playwright.sync_api import expect

    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils (pdftotext) is not installed")
    page = browser_page
    clinician = ClinicianFactory(first_name="Grace", last_name="Hopper")
    case = CaseFactory(
        owner=clinician,
        patient__identifier="MRN-SIGN-1",
        patient__name="Signed Patient",
        clinical_question="Sciatica on the left: which level?",
    )
    first, second = mri_samples()[:2]
    prediction = PredictionFactory(
        scan=scan_from(first, case),
        status="done",
        label="ddd",
        probability=0.81,
        model_version=ModelVersionFactory(name="invgg-browser", version="2"),
        heatmap=ContentFile(png_bytes(width=64, height=64, value=180), name="heat.png"),
    )
    PredictionLevel.objects.create(
        prediction=prediction,
        level="L4-L5",
        box=[10, 10, 40, 30],
        grade=4,
        grade_probabilities=[0.01, 0.04, 0.15, 0.62, 0.18],
        degenerated_probability=0.95,
    )
    failed = PredictionFactory(scan=scan_from(second, case), status="failed", error="no active model")
    case_url = f"{live_server.url}/cases/{case.pk}/"

    log_in(page, live_server.url, clinician.username)
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    page.goto(case_url)
    blockers = page.locator("#sign-off-blockers")
    expect(blockers).to_contain_text("1 prediction not reviewed")
    expect(blockers).to_contain_text("1 prediction failed")
    shot(page, "19-sign-off-blocked")

    # A second window left open on the case, in the same session, as another screen on the ward would be.
    stale_window = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    stale_window.add_cookies(page.context.cookies())
    stale = stale_window.new_page()
    stale.goto(case_url)

    page.get_by_label("Conclusion").fill("Too early.")
    page.get_by_role("button", name="Sign off").click()
    expect(page.locator(".sign-off-form [role=alert]")).to_contain_text("1 prediction not reviewed")

    review = page.locator(f"#prediction-{prediction.pk}")
    agree(review)
    review.get_by_role("button", name="Save review").click()
    expect(page.locator(".review-done")).to_contain_text("agree")
    unused = page.locator(f"#prediction-{failed.pk}")
    unused.locator("summary", has_text="Mark not used").click()
    unused.get_by_label("Why is it not used?").fill("Wrong sequence uploaded.")
    unused.get_by_role("button", name="Mark not used").click()
    expect(page.locator(f"#prediction-{failed.pk} .not-used")).to_contain_text("Wrong sequence uploaded.")
    expect(page.locator("#sign-off-ready")).to_be_visible()

    page.get_by_label("Conclusion").fill("Degenerated L4-L5 disc (Pfirrmann 4); no other finding.")
    page.get_by_role("button", name="Sign off").click()
    expect(page.locator("#signed-off-note")).to_contain_text("Signed off by Grace Hopper")
    expect(page.locator("#upload-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Save review")).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit case")).to_have_count(0)
    shot(page, "20-signed-off")

    stale.locator(f"#prediction-{prediction.pk}").get_by_role("button", name="Re-run").click()
    expect(stale.locator(".messages")).to_contain_text("The case is signed off; reopen it, with a reason")
    assert Prediction.objects.filter(scan=prediction.scan).count() == 1
    shot(stale, "21-refused-rerun")
    stale_window.close()

    with page.expect_download() as download:
        page.get_by_role("link", name="Download report (PDF)").click()
    first_report = tmp_path / download.value.suggested_filename
    download.value.save_as(first_report)
    assert first_report.name == f"case-{case.pk}-report-v1.pdf"
    text = pdf_text(first_report)
    for expected in [
        "MRN-SIGN-1",
        "Sciatica on the left",
        "Degenerated L4-L5 disc",
        "Grace Hopper",
        "L4-L5 4",
    ]:
        assert expected in text, text

    page.emulate_media(media="print")
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.get_by_role("button", name="Reopen case")).to_be_hidden()
    expect(page.locator("#signed-off-note")).to_be_visible()
    shot(page, "22-signed-off-print")
    page.emulate_media(media="screen")

    page.get_by_role("button", name="Reopen case").click()
    expect(page.locator("#lifecycle .errorlist")).to_contain_text("required")
    page.get_by_label("Reason for reopening").fill("MRI of the whole spine arrived; L5-S1 to be added.")
    page.get_by_role("button", name="Reopen case").click()
    expect(page.locator(".messages")).to_contain_text("Case reopened")
    expect(page.locator("#upload-form")).to_be_visible()
    expect(page.locator("#reports")).to_contain_text("MRI of the whole spine arrived")
    shot(page, "23-reopened")

    page.get_by_label("Conclusion").fill("Degenerated L4-L5 and L5-S1 discs.")
    page.get_by_role("button", name="Sign off").click()
    expect(page.locator("#signed-off-note")).to_contain_text("report version 2")
    expect(page.get_by_role("link", name="Download report v1 (PDF)")).to_be_visible()
    shot(page, "24-amended")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download report v2 (PDF)").click()
    amended = tmp_path / download.value.suggested_filename
    download.value.save_as(amended)
    text = pdf_text(amended)
    assert "amending version 1" in text and "MRI of the whole spine arrived" in text, text
    assert [report.version for report in CaseReport.objects.filter(case=case)] == [2, 1]
    assert csp_violations == []


def test_clinician_corrects_one_levels_grade_and_the_image_decision_follows(
    live_server, browser_page, csp_violations
):
    """The model graded L4-L5 3 (degenerated), so the image is DDD; the clinician grades it 2, the page
    says the image is now normal before saving, and the saved review is an override to Normal with the
    corrected level marked. The models page counts the changed grade."""
    from django.core.files.base import ContentFile
    from playwright.sync_api import expect

    page = browser_page
    clinician = ClinicianFactory()
    case = CaseFactory(owner=clinician, patient__identifier="MRN-LEVELS-1")
    scan = scan_from(mri_samples()[0], case)
    model = ModelVersionFactory(name="invgg-levels", version="3")
    prediction = PredictionFactory(
        scan=scan,
        status="done",
        label="ddd",
        probability=0.74,
        model_version=model,
        heatmap=ContentFile(mri_samples()[1].read_bytes(), name="heat.png"),
    )
    for row, (level, grade) in enumerate([("L3-L4", 2), ("L4-L5", 3), ("L5-S1", 2)]):
        probabilities = [0.05] * 5
        probabilities[grade - 1] = 0.8
        top = scan.height * (0.5 + 0.1 * row)
        PredictionLevel.objects.create(
            prediction=prediction,
            level=level,
            box=[int(scan.width * 0.4), int(top), int(scan.width * 0.6), int(top + scan.height * 0.06)],
            grade=grade,
            grade_probabilities=probabilities,
            degenerated_probability=round(sum(probabilities[2:]), 4),
        )

    log_in(page, live_server.url, clinician.username)
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    card = page.locator(f"#prediction-{prediction.pk}")
    outcome = card.locator('[data-field="review-outcome"]')
    expect(outcome).to_have_text(
        "Image decision: Degenerative disc disease (agrees with the model); every grade confirmed."
    )
    expect(card.get_by_label("L4-L5", exact=True)).to_have_value("3")
    # The model's decision threshold is marked on the probability bar.
    expect(card.locator('[data-field="threshold"]')).to_have_text("threshold 0.50")
    expect(card.locator('[data-field="bar-threshold"]')).to_have_attribute("x1", "500")

    scan_card = page.locator(f"#scan-{scan.pk}")
    legend = scan_card.locator('[data-field="heatmap-legend"]')
    expect(legend).to_be_hidden()
    card.get_by_role("button", name="Show heatmap").click()
    expect(legend).to_be_visible()
    expect(scan_card.locator("img.scan-underlay")).to_have_count(1)
    scan_card.get_by_label("Heatmap opacity").fill("40")
    expect(scan_card.locator("img.thumb")).to_have_css("opacity", "0.4")
    scan_card.get_by_role("button", name="Zoom in").click()
    expect(scan_card.locator('[data-field="zoom-level"]')).to_have_text("150%")
    shot(page, "25-heatmap-legend-opacity-zoom")
    scan_card.get_by_role("button", name="Zoom out").click()
    card.get_by_role("button", name="Hide heatmap").click()
    expect(legend).to_be_hidden()
    shot(page, "26-level-review-form")

    card.get_by_label("L4-L5", exact=True).select_option("2")
    expect(outcome).to_have_text("Image decision: Normal (overrides the model); 1 level corrected.")
    card.get_by_label("Comment").fill("L4-L5 keeps its disc signal.")
    shot(page, "27-level-grade-corrected")
    card.get_by_role("button", name="Save review").click()

    expect(page.locator(".review-done")).to_contain_text(
        f"Reviewed by {clinician.username}: override, final label Normal"
    )
    expect(page.locator(".review-levels li.changed")).to_have_text("L4-L5: grade 2 (model 3, corrected)")
    expect(page.locator(".review-levels li")).to_have_count(3)
    shot(page, "28-level-review-saved")
    review = Review.objects.get()
    assert (review.decision, review.final_label, review.comment) == (
        "override",
        "normal",
        "L4-L5 keeps its disc signal.",
    )
    assert sorted((given.finding.level, given.grade) for given in review.levels.all()) == [
        ("L3-L4", 2),
        ("L4-L5", 2),
        ("L5-S1", 2),
    ]

    page.goto(f"{live_server.url}/models/{model.pk}/")
    l4_l5 = page.locator("#level-reviews tbody tr").nth(1)
    expect(l4_l5.locator("th")).to_have_text("L4-L5")
    expect(l4_l5.locator("td")).to_have_text(["1", "1", "100%"])
    shot(page, "29-models-level-grades-changed")

    page.goto(f"{live_server.url}/")
    page.get_by_label("Patient identifier").fill("levels")
    page.get_by_label("Signed off").select_option("")
    page.get_by_label("Sort by").select_option("patient_identifier")
    page.get_by_role("button", name="Show cases").click()
    expect(page.locator("#cases tbody tr")).to_have_count(1)
    expect(page.locator("#cases tbody")).to_contain_text("MRN-LEVELS-1")
    expect(page.locator("#time-zone")).to_contain_text("Times in")
    shot(page, "30-worklist-filtered")
    assert csp_violations == []
