from __future__ import annotations

import json

from ml.models import ModelVersion
from tests.factories import ModelVersionFactory, PredictionFactory, png_bytes


def test_models_page_shows_the_active_model_card_metrics_plots_and_override_rate(client, clinician, tmp_path):
    (tmp_path / "model_card.json").write_text(json.dumps({"name": "invgg-1", "dataset": "Sudirman T2"}))
    (tmp_path / "roc_curve.png").write_bytes(png_bytes())
    ModelVersion.objects.update(is_active=False)  # a shipped model may be active after migrate
    model = ModelVersionFactory(
        name="invgg-1", artifact_path=str(tmp_path), is_active=True, metrics={"auc": 0.91}
    )
    for decision, final_label in [("agree", "ddd"), ("override", "normal")]:
        prediction = PredictionFactory(status="done", label="ddd", probability=0.7, model_version=model)
        prediction.review = None
        from diagnosis.models import Review

        Review.objects.create(
            prediction=prediction, reviewer=clinician, decision=decision, final_label=final_label
        )
    client.force_login(clinician)
    html = client.get("/models/").content.decode()
    assert "Sudirman T2" in html and "auc" in html and "0.91" in html
    assert f"/models/{model.pk}/plots/roc_curve.png" in html and "confusion_matrix.png" not in html
    assert "1 of 2 reviews" in html and "50%" in html
    plot = client.get(f"/models/{model.pk}/plots/roc_curve.png")
    assert plot.status_code == 200 and plot["Content-Type"] == "image/png"


def test_model_plot_serves_only_known_plot_names(client, clinician, tmp_path):
    (tmp_path / "model_card.json").write_text("{}")
    (tmp_path / "secret.png").write_bytes(png_bytes())
    model = ModelVersionFactory(artifact_path=str(tmp_path))
    client.force_login(clinician)
    for name in [
        "model_card.json",
        "secret.png",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E%2Fmodel_card.json",
        "confusion_matrix.png",
    ]:
        assert client.get(f"/models/{model.pk}/plots/{name}").status_code == 404
    assert client.get(f"/models/{model.pk}/plots/../model_card.json").status_code == 404
    client.logout()
    assert client.get(f"/models/{model.pk}/plots/roc_curve.png").status_code == 302
