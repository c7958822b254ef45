from __future__ import annotations

from ml.levels.calibration import Calibration
from ml.models import ModelVersion
from tests.factories import ModelVersionFactory, PredictionFactory, png_bytes, write_artifact

METRICS = {
    "roc_auc": 0.91234,
    "n": 78,
    "levels": {"L4-L5": {"n": 78, "accuracy": 0.6, "within_one": 0.98, "weighted_kappa": 0.71234}},
    "grading": {
        "n": 234,
        "accuracy": 0.6,
        "within_one": 0.99,
        "weighted_kappa": 0.7,
        "balanced_accuracy": 0.8,
    },
    "localization": {"found_rate": 0.97, "n": 234},
}


def test_models_page_shows_the_active_model_card_metrics_plots_and_override_rate(client, clinician, tmp_path):
    ensemble = {"members": 3, "rule": "mean of the members' threshold logits"}
    calibration = Calibration(0.81234, -0.2, fitted_on="val split, 78 images")
    write_artifact(
        tmp_path,
        "invgg-1",
        "invgg",
        calibration=calibration,
        facts={"dataset": "Sudirman T2", "ensemble": ensemble},
    )
    (tmp_path / "roc_curve.png").write_bytes(png_bytes())
    ModelVersion.objects.update(is_active=False)  # a shipped model may be active after migrate
    model = ModelVersionFactory(name="invgg-1", artifact_path=str(tmp_path), is_active=True, metrics=METRICS)
    for decision, final_label in [("agree", "ddd"), ("override", "normal")]:
        prediction = PredictionFactory(status="done", label="ddd", probability=0.7, model_version=model)
        prediction.review = None
        from diagnosis.models import Review

        Review.objects.create(
            prediction=prediction, reviewer=clinician, decision=decision, final_label=final_label
        )
    client.force_login(clinician)
    html = client.get("/models/").content.decode()
    assert "Sudirman T2" in html and "slope 0.812" in html and "L3-L4, L4-L5, L5-S1" in html
    assert "fitted on val split, 78 images" in html
    assert "3 graders trained with different seeds, their logits averaged" in html and "Ensemble" not in html
    assert '<th scope="row">ROC AUC</th><td>0.912</td>' in html and "<td>78</td>" in html
    assert '<th scope="row">L4-L5</th><td>78</td><td>0.600</td><td>0.980</td><td>0.712</td>' in html
    assert "localization · found_rate" in html and "0.97" in html
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
