from django.urls import path

from diagnosis import dicom_views, views, views_sharing

app_name = "diagnosis"

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("patients/", views.patient_list_page, name="patient-list"),
    path("patients/new/", views.patient_create_page, name="patient-create"),
    path("patients/<id:pk>/", views.patient_detail_page, name="patient-detail"),
    path("patients/<id:pk>/edit/", views.patient_edit_page, name="patient-edit"),
    path("patients/<id:pk>/cases/new/", views.case_create_page, name="case-create"),
    path("cases/new/", views_sharing.case_open_by_identifier_page, name="case-open-by-identifier"),
    path("cases/<id:pk>/", views.case_detail_page, name="case-detail"),
    path("cases/<id:pk>/history/", views_sharing.case_history_page, name="case-history"),
    path("cases/<id:pk>/referrals/", views_sharing.case_refer, name="case-refer"),
    path(
        "cases/<id:pk>/referrals/<id:referral_id>/withdraw/",
        views_sharing.referral_withdraw_page,
        name="referral-withdraw",
    ),
    path("cases/<id:pk>/edit/", views.case_edit_page, name="case-edit"),
    path("cases/<id:pk>/upload/", views.case_upload, name="case-upload"),
    path("cases/<id:pk>/status.json", views.case_status, name="case-status"),
    path("incoming/", dicom_views.incoming_page, name="incoming"),
    path("incoming/<id:pk>/attach/", dicom_views.incoming_attach_page, name="incoming-attach"),
    path("series/<id:pk>/slice/", dicom_views.series_slice, name="series-slice"),
    path("cases/<id:pk>/sign-off/", views.case_sign_off_page, name="case-sign-off"),
    path("cases/<id:pk>/reopen/", views.case_reopen_page, name="case-reopen"),
    path("cases/<id:pk>/report.pdf", views.case_report, name="case-report"),
    path("scans/<id:pk>/file", views.scan_file, name="scan-file"),
    path("scans/<id:pk>/preview", views.scan_preview, name="scan-preview"),
    path("predictions/<id:pk>/", views.prediction_page, name="prediction-page"),
    path("predictions/<id:pk>/heatmap", views.prediction_heatmap, name="prediction-heatmap"),
    path("predictions/<id:pk>/review/", views.prediction_review, name="prediction-review"),
    path("predictions/<id:pk>/rerun/", views.prediction_rerun, name="prediction-rerun"),
    path("predictions/<id:pk>/send-to-pacs/", dicom_views.prediction_send, name="prediction-send"),
    path("predictions/<id:pk>/not-used/", views.prediction_not_used, name="prediction-not-used"),
    path("predictions/<id:pk>/use-again/", views.prediction_use_again_page, name="prediction-use-again"),
    path("models/", views.model_list_page, name="model-list"),
    path("models/<id:pk>/", views.model_list_page, name="model-detail"),
    path("models/<id:pk>/plots/<str:name>", views.model_plot, name="model-plot"),
]
