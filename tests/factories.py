from __future__ import annotations

import hashlib
import io

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from PIL import Image

from diagnosis.models import CLINICIANS_GROUP, Case, Patient, Prediction, PredictionLevel, Scan
from diagnosis.services.predictions import prediction_supersede
from ml.models import ModelVersion


def png_bytes(width: int = 32, height: int = 32, value: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct-horse-battery")


class ClinicianFactory(UserFactory):
    @factory.post_generation
    def clinician_group(user, create, extracted, **kwargs):
        if create:
            user.groups.add(Group.objects.get_or_create(name=CLINICIANS_GROUP)[0])


class StaffFactory(UserFactory):
    is_staff = True
    is_superuser = True


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    identifier = factory.Sequence(lambda n: f"P{n:05d}")
    created_by = factory.SubFactory(ClinicianFactory)


class CaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Case

    owner = factory.SubFactory(ClinicianFactory)
    patient = factory.SubFactory(PatientFactory, created_by=factory.SelfAttribute("..owner"))


class ScanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scan

    class Params:
        content = factory.LazyAttribute(lambda o: png_bytes(value=o.factory_parent_value))
        factory_parent_value = factory.Sequence(lambda n: n % 256)

    case = factory.SubFactory(CaseFactory)
    uploaded_by = factory.SelfAttribute("case.owner")
    original_name = "scan.png"
    format = Scan.Format.PNG
    width = 32
    height = 32
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.content).hexdigest())
    file = factory.LazyAttribute(lambda o: ContentFile(o.content, name=f"{o.sha256}.png"))


class PredictionFactory(factory.django.DjangoModelFactory):
    """A prediction made as prediction_create makes one: it supersedes the scan's earlier predictions."""

    class Meta:
        model = Prediction

    scan = factory.SubFactory(ScanFactory)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        prediction_supersede(predictions=Prediction.objects.filter(scan=kwargs["scan"]))
        return super()._create(model_class, *args, **kwargs)


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"model-{n}")
    architecture = ModelVersion.Architecture.INVGG
    version = "1"
    artifact_path = factory.LazyAttribute(lambda o: f"ml/artifacts/{o.name}")
    input_size = 64
    threshold = 0.5


def add_levels(prediction: Prediction, grades=(2, 3, 2)) -> list[PredictionLevel]:
    """Findings at L3-L4, L4-L5 and L5-S1 with these grades, stacked down the 32x32 test scan."""
    levels = []
    for row, (level, grade) in enumerate(zip(PredictionLevel.Level.values, grades, strict=True)):
        probabilities = [0.05] * 5
        probabilities[grade - 1] = 0.8
        levels.append(
            PredictionLevel.objects.create(
                prediction=prediction,
                level=level,
                box=[8, 4 + 9 * row, 24, 10 + 9 * row],
                grade=grade,
                grade_probabilities=probabilities,
                degenerated_probability=round(sum(probabilities[2:]), 4),
            )
        )
    return levels


def done_prediction(owner, **kwargs) -> Prediction:
    """A finished prediction with a heatmap and its three levels, on a scan in a case the owner holds."""
    scan = ScanFactory(case=CaseFactory(owner=owner))
    prediction = PredictionFactory(
        scan=scan,
        status="done",
        label="ddd",
        probability=0.8,
        heatmap=ContentFile(png_bytes(value=200), name="heat.png"),
        **kwargs,
    )
    add_levels(prediction)
    return prediction


def model_card(name: str = "invgg-1", architecture: str = "invgg", **fields):
    """A complete model card (not trained: for code that reads cards, not models)."""
    from ml.card import GraderSettings, LocalizerSettings, ModelCard
    from ml.levels.calibration import Calibration
    from ml.levels.discs import BoxShape
    from ml.levels.gate import GateSpec
    from ml.preprocessing import PreprocessSpec

    gate = GateSpec(0.05, (0.5, 2.0), (0.07, 0.24), 1.0, 0.09)
    defaults = {
        "version": "1",
        "level_names": ("L3-L4", "L4-L5", "L5-S1"),
        "localizer": LocalizerSettings(PreprocessSpec(input_size=128), BoxShape(1.2, 0.5), gate, 505011),
        "grader": GraderSettings(PreprocessSpec(input_size=64), 64, 1.6, "features", 38000),
        "calibration": Calibration(0.81234, -0.2),
    }
    return ModelCard(name=name, architecture=architecture, **{**defaults, **fields})


def write_artifact(folder, name: str = "invgg-1", architecture: str = "invgg", **fields) -> None:
    """An artifact folder with that card and placeholder model files."""
    folder.mkdir(parents=True, exist_ok=True)
    model_card(name, architecture, **fields).write(folder)
    for file_name in ("localizer.keras", "grader.keras"):
        (folder / file_name).write_bytes(b"weights")
