"""One registry for the whole institution: identifiers trimmed and unique whatever their case; any
clinician opens a case for a patient found by the exact identifier, and sees only their own patients."""

from __future__ import annotations

import importlib

import pytest
from django.db import IntegrityError, transaction

from diagnosis.errors import ApplicationError, PermissionDenied
from diagnosis.models import AccessEvent, Patient
from diagnosis.selectors import case_list, patient_list
from diagnosis.services.cases import case_create_for_identifier
from diagnosis.services.patients import IDENTIFIER_TAKEN, patient_create, patient_update
from tests.factories import CaseFactory, PatientFactory, UserFactory
from tests.migrations import migrate, migrate_to_latest

pytestmark = pytest.mark.django_db


@pytest.fixture
def registered(clinician):
    return CaseFactory(owner=clinician, patient=PatientFactory(identifier="MRN-100234", created_by=clinician))


@pytest.mark.parametrize("identifier", ["MRN-100234", " mrn-100234 ", "Mrn-100234\t"])
def test_registering_a_taken_identifier_is_refused_without_saying_whose(
    registered, other_clinician, identifier
):
    with pytest.raises(ApplicationError) as error:
        patient_create(user=other_clinician, identifier=identifier)
    assert error.value.errors == {"identifier": [IDENTIFIER_TAKEN]}
    assert str(registered.patient.pk) not in str(error.value.errors)
    assert Patient.objects.count() == 1
    lookup = AccessEvent.objects.get(user=other_clinician)
    assert (lookup.action, lookup.patient_id) == (AccessEvent.Action.LOOKUP_PATIENT, registered.patient_id)


def test_the_owner_gets_the_same_answer(registered, clinician):
    with pytest.raises(ApplicationError) as error:
        patient_create(user=clinician, identifier="mrn-100234")
    assert error.value.errors == {"identifier": [IDENTIFIER_TAKEN]}


def test_renaming_onto_a_taken_identifier_is_refused(registered, clinician):
    patient = PatientFactory(identifier="MRN-2", created_by=clinician)
    with pytest.raises(ApplicationError):
        patient_update(user=clinician, patient=patient, identifier=" mrn-100234")
    patient.refresh_from_db()
    assert patient.identifier == "MRN-2"
    assert patient_update(user=clinician, patient=patient, identifier=" mrn-2 ").identifier == "mrn-2"


def test_the_database_refuses_duplicates_in_another_case_and_untrimmed_identifiers(registered, clinician):
    for identifier in ("mrn-100234", " MRN-3"):
        with pytest.raises(IntegrityError), transaction.atomic():
            Patient.objects.create(identifier=identifier, created_by=clinician)


def test_any_clinician_opens_a_case_by_the_exact_identifier(registered, other_clinician):
    assert not patient_list(user=other_clinician).exists()
    assert not patient_list(user=other_clinician, search="100234").exists()
    case = case_create_for_identifier(
        user=other_clinician, identifier="  mrn-100234 ", clinical_question="Second look"
    )
    assert (case.patient, case.owner, case.clinical_question) == (
        registered.patient,
        other_clinician,
        "Second look",
    )
    assert list(patient_list(user=other_clinician)) == [registered.patient]
    assert list(case_list(user=other_clinician)) == [case], "the other clinician's case stays theirs"
    lookup = AccessEvent.objects.get(user=other_clinician)
    assert (lookup.action, lookup.patient_id, lookup.detail) == (
        AccessEvent.Action.LOOKUP_PATIENT,
        registered.patient_id,
        "open a case: mrn-100234",
    )


@pytest.mark.parametrize("identifier", ["MRN-10023", "MRN-100234x", "", "   "])
def test_only_the_exact_identifier_opens_a_case(registered, other_clinician, identifier):
    with pytest.raises(ApplicationError) as error:
        case_create_for_identifier(user=other_clinician, identifier=identifier)
    assert "identifier" in error.value.errors
    assert not case_list(user=other_clinician).exists()
    lookup = AccessEvent.objects.get(user=other_clinician)
    assert (lookup.action, lookup.patient_id) == (AccessEvent.Action.LOOKUP_PATIENT, None)


def test_a_user_outside_the_clinicians_cannot_look_up(registered):
    with pytest.raises(PermissionDenied):
        case_create_for_identifier(user=UserFactory(), identifier="MRN-100234")
    assert not AccessEvent.objects.exists()


MIGRATION_BEFORE = ("diagnosis", "0004_prediction_levels")


@pytest.mark.django_db(transaction=True)
def test_the_migration_trims_identifiers_and_reports_duplicates_without_merging(capsys):
    old = migrate([MIGRATION_BEFORE])
    user = old.get_model("auth", "User").objects.create(username="registrar")
    OldPatient = old.get_model("diagnosis", "Patient")
    first = OldPatient.objects.create(identifier="MRN-100234", created_by_id=user.pk)
    duplicate = OldPatient.objects.create(identifier=" mrn-100234 ", created_by_id=user.pk)
    spaced = OldPatient.objects.create(identifier="  MRN-7 ", created_by_id=user.pk)
    try:
        migrate_to_latest()
    finally:
        output = capsys.readouterr().out
    identifiers = dict(Patient.objects.values_list("pk", "identifier"))
    assert identifiers == {
        first.pk: "MRN-100234",
        duplicate.pk: f"mrn-100234 [duplicate {duplicate.pk}]",
        spaced.pk: "MRN-7",
    }
    assert f"Patient {duplicate.pk} ' mrn-100234 ' duplicates patient {first.pk} 'MRN-100234'" in output


def test_the_duplicate_name_fits_the_field():
    migration = importlib.import_module("diagnosis.migrations.0005_patient_identifier_normalise")
    name = migration.duplicate_name("X" * 64, 123456)
    assert len(name) == 64 and name.endswith(" [duplicate 123456]")
