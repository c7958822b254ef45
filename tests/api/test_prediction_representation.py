"""The patient, case, prediction and scan serializers write their fields directly for speed; what they
write must stay exactly what DRF's declared fields give, for every kind of record the API shows."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from diagnosis.api.serializers import (
    CaseOutputSerializer,
    NotUsedOutputSerializer,
    PatientOutputSerializer,
    PredictionOutputSerializer,
    ReviewOutputSerializer,
    ScanOutputSerializer,
    ScanUploadOutputSerializer,
)
from diagnosis.api.views import CASE_REPORTS
from diagnosis.models import PredictionExclusion, Review
from diagnosis.selectors import (
    case_list,
    patient_list,
    prediction_get,
    prediction_get_for_api,
    prediction_list_for_api,
    prediction_related,
    scan_list,
)
from diagnosis.services.referrals import referral_create
from diagnosis.services.reviews import review_create
from diagnosis.services.signoff import case_reopen, case_sign_off, prediction_mark_not_used
from tests.factories import CaseFactory, PredictionFactory, ScanFactory, done_prediction


def _generic(serializer: serializers.Serializer, instance) -> dict:
    """DRF's own ModelSerializer output, field by field, nested serializers included."""

    def walk(field, value):
        if isinstance(field, serializers.ListSerializer):
            return [walk(field.child, item) for item in (value.all() if hasattr(value, "all") else value)]
        if isinstance(field, serializers.Serializer):
            return {
                name: (None if attribute is None else walk(sub, attribute))
                for name, sub in field.fields.items()
                for attribute in [sub.get_attribute(value)]
            }
        return field.to_representation(value)

    out = {}
    for name, field in serializer.fields.items():
        attribute = field.get_attribute(instance)
        if isinstance(field, serializers.SerializerMethodField):
            out[name] = field.to_representation(attribute)
        elif attribute is None:
            out[name] = None
        else:
            out[name] = walk(field, attribute)
    return out


@pytest.fixture
def predictions(clinician, other_clinician, active_model, other_model):
    reviewed = done_prediction(clinician, model_version=active_model)
    referral_create(user=clinician, case=reviewed.scan.case, clinician=other_clinician.username)
    review_create(user=clinician, prediction=reviewed, levels=[{"level": "L4-L5", "grade": 2}], comment="x")
    review_create(user=clinician, prediction=reviewed, levels=[{"level": "L5-S1", "grade": 4}])
    review_create(user=other_clinician, prediction=reviewed, decision="agree", comment="agree")
    not_used = done_prediction(clinician, model_version=other_model)
    prediction_mark_not_used(user=clinician, prediction=not_used, reason="motion artefact")
    queued = PredictionFactory(scan=ScanFactory(case=reviewed.scan.case), requested_model=other_model)
    refused = PredictionFactory(
        scan=ScanFactory(case=reviewed.scan.case),
        status="done",
        label="not_assessable",
        reason="no lumbar discs found",
        model_version=active_model,
        preprocess_ms=3.25,
        inference_ms=40.5,
        attempts=2,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    failed = PredictionFactory(
        scan=ScanFactory(case=reviewed.scan.case), status="failed", error="corrupt PNG"
    )
    return [reviewed, not_used, queued, refused, failed]


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Jakarta"])
def test_the_direct_representation_equals_drfs_fields_for_lists_and_detail(clinician, predictions, time_zone):
    request = APIRequestFactory().get("/api/v1/predictions/")
    request.user = clinician
    listed = {p.pk: p for p in prediction_list_for_api(user=clinician)}
    assert set(listed) == {p.pk for p in predictions}
    with timezone.override(time_zone):
        for prediction in predictions:
            one = (
                prediction_get(user=clinician, pk=prediction.pk),
                prediction_get_for_api(user=clinician, pk=prediction.pk),
            )
            for instance in (listed[prediction.pk], *one):
                serializer = PredictionOutputSerializer(instance, context={"request": request})
                direct = serializer.data
                assert list(direct) == list(serializer.fields)
                assert direct == _generic(serializer, instance)
                heatmap = reverse("api:prediction-heatmap", args=[prediction.pk])
                assert direct["heatmap_url"] in (None, request.build_absolute_uri(heatmap))
    reviewed = PredictionOutputSerializer(listed[predictions[0].pk], context={"request": request}).data
    assert [level["changed"] for level in reviewed["review"]["levels"]] == [False, False, True]
    assert reviewed["review"]["version"] == 2 and len(reviewed["second_opinions"]) == 1
    assert reviewed["heatmap_url"] == f"http://testserver/api/v1/predictions/{predictions[0].pk}/heatmap"
    assert (
        PredictionOutputSerializer(listed[predictions[1].pk]).data["not_used"]["reason"] == "motion artefact"
    )


def test_reviews_read_as_rows_for_a_page_show_as_drfs_fields_of_the_reviews(
    clinician, predictions, django_assert_num_queries
):
    with django_assert_num_queries(4):
        related = prediction_related(predictions)
    read = {
        review.id: review
        for opinions in related.opinions.values()
        for review in [opinions.review, *opinions.earlier_versions, *opinions.second_opinions]
    }
    reviews = Review.objects.filter(prediction__in=predictions)
    assert set(read) == {review.pk for review in reviews} and len(read) == 3
    serializer = ReviewOutputSerializer()
    for review in reviews:
        assert serializer.to_representation(read[review.pk]) == _generic(
            ReviewOutputSerializer(review), review
        )
        assert serializer.to_representation(review) == serializer.to_representation(read[review.pk])


def test_exclusions_read_as_rows_for_a_page_show_as_drfs_fields_of_the_exclusion(predictions):
    related = prediction_related(predictions)
    exclusion = PredictionExclusion.objects.get()
    assert set(related.exclusions) == {exclusion.prediction_id} == {predictions[1].pk}
    with timezone.override("America/New_York"):
        direct = NotUsedOutputSerializer().to_representation(related.exclusions[exclusion.prediction_id])
        assert direct == _generic(NotUsedOutputSerializer(exclusion), exclusion)
    assert direct["by"] == exclusion.excluded_by.username and direct["reason"] == "motion artefact"


def test_the_direct_scan_representation_equals_drfs_fields(clinician, predictions):
    request = APIRequestFactory().get("/api/v1/cases/1/scans/")
    request.user = clinician
    case = predictions[0].scan.case
    scans = list(
        scan_list(user=clinician)
        .filter(case=case)
        .select_related("uploaded_by")
        .prefetch_related("predictions")
    )
    scans[0].pixel_spacing, scans[0].note, scans[0].series_description = [0.5, 0.6], "motion", "T2 SAG"
    assert len(scans) == 4
    with timezone.override("America/New_York"):
        for scan in scans:
            serializer = ScanOutputSerializer(scan, context={"request": request})
            assert list(serializer.data) == list(serializer.fields)
            assert serializer.data == _generic(serializer, scan)
            file_path = reverse("api:scan-file", args=[scan.pk])
            assert serializer.data["file_url"] == request.build_absolute_uri(file_path)
            scan.prediction = scan.predictions.first()
            upload = ScanUploadOutputSerializer(scan, context={"request": request})
            assert upload.data == _generic(upload, scan)
            assert upload.data["prediction"] == {"id": scan.prediction.pk, "status": scan.prediction.status}


def test_the_direct_patient_and_case_representations_equal_drfs_fields(clinician, predictions):
    """A case signed off twice (the first report reopened), one open, patients with and without a birth
    date."""
    request = APIRequestFactory().get("/api/v1/cases/")
    request.user = clinician
    signed = predictions[0].scan.case
    for prediction in predictions[1:]:
        if prediction.status != "done" or prediction.label == "not_assessable":
            prediction_mark_not_used(user=clinician, prediction=prediction, reason="not needed")
        elif not hasattr(prediction, "exclusion"):
            review_create(user=clinician, prediction=prediction, decision="agree")
    case_sign_off(user=clinician, case=signed, conclusion="Degeneration at L4-L5.")
    case_reopen(user=clinician, case=signed, reason="Late history.")
    case_sign_off(user=clinician, case=signed, conclusion="Degeneration at L4-L5 and L5-S1.")
    open_case = CaseFactory(owner=clinician, clinical_question="Back pain?", notes="Referred by GP.")
    open_case.patient.birth_date, open_case.patient.name = datetime.date(1961, 3, 9), "Ayu Lestari"
    open_case.patient.save()
    cases = {case.pk: case for case in case_list(user=clinician).prefetch_related(CASE_REPORTS)}
    assert {signed.pk, open_case.pk} <= set(cases)
    with timezone.override("Asia/Jakarta"):
        for case in cases.values():
            serializer = CaseOutputSerializer(case, context={"request": request})
            assert list(serializer.data) == list(serializer.fields)
            assert serializer.data == _generic(serializer, case)
        for patient in patient_list(user=clinician):
            serializer = PatientOutputSerializer(patient)
            assert serializer.data == _generic(serializer, patient)
    signed_data = CaseOutputSerializer(cases[signed.pk], context={"request": request}).data
    assert [report["version"] for report in signed_data["reports"]] == [2, 1]
    assert signed_data["reports"][1]["reopened_by"] == clinician.username
    assert signed_data["signed_off"]["version"] == 2
