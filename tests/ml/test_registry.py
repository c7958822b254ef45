from __future__ import annotations

import pytest

from ml import registry
from ml.models import ModelVersion
from tests.factories import ModelVersionFactory, write_artifact

pytestmark = pytest.mark.django_db


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "SHIPPED_ARTIFACTS_DIR", tmp_path)
    ModelVersion.objects.all().delete()
    write_artifact(tmp_path / "vgg-a", "vgg-a", "vgg", threshold=0.4, trained_at="2026-11-26T12:00:00+00:00")
    write_artifact(
        tmp_path / "invgg-a", "invgg-a", "invgg", threshold=0.4, trained_at="2026-11-26T12:00:00+00:00"
    )
    write_artifact(tmp_path / ".invgg-b.partial", "invgg-b", "invgg")
    return tmp_path


def test_shipped_models_are_registered_with_invgg_active(shipped):
    registry.register_shipped_models()
    assert set(ModelVersion.objects.values_list("name", flat=True)) == {"vgg-a", "invgg-a"}
    active = ModelVersion.objects.get(is_active=True)
    assert active.name == "invgg-a"
    assert active.threshold == 0.4 and active.metrics == {} and active.trained_at is not None


def test_registering_again_keeps_the_chosen_active_model(shipped, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("trained") / "chosen"
    write_artifact(elsewhere, "chosen", "vgg")
    chosen = ModelVersionFactory(is_active=True, artifact_path=str(elsewhere))
    registry.register_shipped_models()
    registry.register_shipped_models()
    assert ModelVersion.objects.get(is_active=True) == chosen
    assert ModelVersion.objects.filter(name="invgg-a").count() == 1


def test_an_active_model_whose_file_is_gone_gives_way_to_the_shipped_invgg(shipped):
    ModelVersionFactory(name="invgg-old", is_active=True, artifact_path=str(shipped / "removed"))
    registry.register_shipped_models()
    assert ModelVersion.objects.get(is_active=True).name == "invgg-a"


def test_a_folder_without_a_card_is_not_an_artifact(tmp_path):
    with pytest.raises(registry.RegistryError, match="not a model artifact"):
        registry.model_version_register(artifact_dir=tmp_path)


def test_without_a_shipped_invgg_the_shipped_vgg_is_activated(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "SHIPPED_ARTIFACTS_DIR", tmp_path)
    ModelVersion.objects.all().delete()
    write_artifact(tmp_path / "vgg-a", "vgg-a", "vgg")

    registry.register_shipped_models()

    assert ModelVersion.objects.get(is_active=True).name == "vgg-a"
