from csp.constants import SELF
from csp.decorators import csp_replace
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from diagnosis.api import dicom_views, sharing, views

app_name = "api"

urlpatterns = [
    path("v1/auth/token/", views.TokenObtainApi.as_view(), name="token"),
    path("v1/auth/logout/", views.TokenLogoutApi.as_view(), name="logout"),
    path("v1/auth/logout-all/", views.TokenLogoutAllApi.as_view(), name="logout-all"),
    path("v1/patients/", views.PatientListApi.as_view(), name="patient-list"),
    path("v1/patients/<id:pk>/", views.PatientDetailApi.as_view(), name="patient-detail"),
    path("v1/cases/", views.CaseListApi.as_view(), name="case-list"),
    path("v1/cases/<id:pk>/", views.CaseDetailApi.as_view(), name="case-detail"),
    path("v1/cases/<id:pk>/scans/", views.CaseScanListApi.as_view(), name="case-scans"),
    path("v1/cases/<id:pk>/history/", sharing.CaseHistoryApi.as_view(), name="case-history"),
    path("v1/cases/<id:pk>/referrals/", sharing.CaseReferralListApi.as_view(), name="case-referrals"),
    path(
        "v1/cases/<id:pk>/referrals/<id:referral_id>/",
        sharing.CaseReferralDetailApi.as_view(),
        name="case-referral-detail",
    ),
    path("v1/cases/<id:pk>/series/", dicom_views.CaseSeriesListApi.as_view(), name="case-series"),
    path("v1/series/<id:pk>/", dicom_views.SeriesDetailApi.as_view(), name="series-detail"),
    path("v1/series/<id:pk>/slice/", dicom_views.SeriesSliceApi.as_view(), name="series-slice"),
    path("v1/incoming/", dicom_views.IncomingSeriesListApi.as_view(), name="incoming-list"),
    path(
        "v1/incoming/<id:pk>/attach/", dicom_views.IncomingSeriesAttachApi.as_view(), name="incoming-attach"
    ),
    path("v1/cases/<id:pk>/sign-off/", views.CaseSignOffApi.as_view(), name="case-sign-off"),
    path("v1/cases/<id:pk>/reopen/", views.CaseReopenApi.as_view(), name="case-reopen"),
    path("v1/cases/<id:pk>/report.pdf", views.CaseReportApi.as_view(), name="case-report"),
    path("v1/scans/<id:pk>/", views.ScanDetailApi.as_view(), name="scan-detail"),
    path("v1/scans/<id:pk>/file", views.ScanFileApi.as_view(), name="scan-file"),
    path("v1/predictions/", views.PredictionListApi.as_view(), name="prediction-list"),
    path("v1/predictions/<id:pk>/", views.PredictionDetailApi.as_view(), name="prediction-detail"),
    path("v1/predictions/<id:pk>/heatmap", views.PredictionHeatmapApi.as_view(), name="prediction-heatmap"),
    path("v1/predictions/<id:pk>/sr", dicom_views.PredictionReportApi.as_view(), name="prediction-sr"),
    path("v1/predictions/<id:pk>/rerun/", views.PredictionRerunApi.as_view(), name="prediction-rerun"),
    path("v1/predictions/<id:pk>/review/", views.PredictionReviewApi.as_view(), name="prediction-review"),
    path(
        "v1/predictions/<id:pk>/not-used/", views.PredictionNotUsedApi.as_view(), name="prediction-not-used"
    ),
    path("v1/models/", views.ModelVersionListApi.as_view(), name="model-list"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script from its own URL (docs/?script) instead of inline,
    # which the Content-Security-Policy would block; Swagger UI's stylesheet draws its icons as data: images.
    path(
        "docs/",
        csp_replace({"img-src": [SELF, "data:"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api/swagger_ui.html")
        ),
        name="docs",
    ),
    re_path(r"^.*$", views.NotFoundApi.as_view(), name="not-found"),
]
