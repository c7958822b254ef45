from django.urls import path

from diagnosis import views

app_name = "diagnosis"

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("patients/", views.patient_list_page, name="patient-list"),
    path("patients/new/", views.patient_create_page, name="patient-create"),
    path("patients/<id:pk>/", views.patient_detail_page, name="patient-detail"),
    path("patients/<id:pk>/edit/", views.patient_edit_page, name="patient-edit"),
    path("patients/<id:pk>/cases/new/", views.case_create_page, name="case-create"),
    path("cases/<id:pk>/", views.case_detail_page, name="case-detail"),
    path("cases/<id:pk>/edit/", views.case_edit_page, name="case-edit"),
    path("cases/<id:pk>/upload/", views.case_upload, name="case-upload"),
    path("cases/<id:pk>/status.json", views.case_status, name="case-status"),
    path("cases/<id:pk>/sign-off/", views.case_sign_off_page, name="case-sign-off"),
    path("cases/<id:pk>/reopen/", views.case_reopen_page, name="case-reopen"),
    path("cases/<id:pk>/report.pdf", views.case_report, name="case-report"),
    path("scans/<id:pk>/file", views.scan_file, name="scan-file"),
    path("scans/<id:pk>/preview", views.scan_preview, name="scan-preview"),
    path("predictions/<id:pk>/heatmap", views.prediction_heatmap, name="prediction-heatmap"),
    path("predictions/<id:pk>/review/", views.prediction_review, name="prediction-review"),
    path("predictions/<id:pk>/rerun/", views.prediction_rerun, name="prediction-rerun"),
    path("predictions/<id:pk>/not-used/", views.prediction_not_used, name="prediction-not-used"),
    path("predictions/<id:pk>/use-again/", views.prediction_use_again_page, name="prediction-use-again"),
    path("models/", views.model_list_page, name="model-list"),
    path("models/<id:pk>/", views.model_list_page, name="model-detail"),
    path("models/<id:pk>/plots/<str:name>", views.model_plot, name="model-plot"),
]
