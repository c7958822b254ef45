"""Identifiers lose their surrounding spaces, and identifiers that then differ only in case are reported.

Such duplicates are never merged here: which record is right, and whether their cases belong together, is
a clinician's call. The oldest record keeps the identifier; each later one is renamed
"<identifier> [duplicate <id>]" (found by searching "[duplicate" in the patients admin) so that the
case-insensitive unique constraint of the next migration can be created, and each is listed on the
output of `migrate`."""

import sys
from collections import defaultdict

from django.db import migrations

SUFFIX = " [duplicate {pk}]"
MAX_LENGTH = 64


def duplicate_name(identifier: str, pk: int) -> str:
    suffix = SUFFIX.format(pk=pk)
    return identifier[: MAX_LENGTH - len(suffix)] + suffix


def normalise_identifiers(apps, schema_editor, out=None):
    out = out or sys.stdout
    Patient = apps.get_model("diagnosis", "Patient")
    groups = defaultdict(list)
    for patient in Patient.objects.order_by("pk").only("pk", "identifier"):
        groups[patient.identifier.strip().lower()].append(patient)
    for patients in groups.values():
        kept, *duplicates = patients
        for patient in duplicates:
            renamed = duplicate_name(patient.identifier.strip(), patient.pk)
            out.write(
                f"\n  Patient {patient.pk} {patient.identifier!r} duplicates patient {kept.pk} "
                f"{kept.identifier.strip()!r}: renamed {renamed!r}; merge or correct it by hand."
            )
            Patient.objects.filter(pk=patient.pk).update(identifier=renamed)
        if kept.identifier != kept.identifier.strip():
            Patient.objects.filter(pk=kept.pk).update(identifier=kept.identifier.strip())


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0004_prediction_levels"),
    ]

    operations = [migrations.RunPython(normalise_identifiers, migrations.RunPython.noop, elidable=False)]
