"""One API view per use case: validate with a small input serializer, call a selector or a service,
present with an output serializer. Errors leave through diagnosis.api.errors."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Prefetch, QuerySet
from django_filters import FilterSet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from diagnosis.api.authentication import TokenAuthentication
from diagnosis.api.errors import error_response
from diagnosis.api.filters import (
    CaseFilter,
    ModelVersionFilter,
    PatientFilter,
    PredictionFilter,
    ScanFilter,
    id_field,
)
from diagnosis.api.pagination import Pagination
from diagnosis.api.serializers import (
    CaseOutputSerializer,
    ModelVersionOutputSerializer,
    PatientOutputSerializer,
    PredictionOutputSerializer,
    ReviewOutputSerializer,
    ScanOutputSerializer,
    ScanUploadOutputSerializer,
)
from diagnosis.errors import ApplicationError, NotFound
from diagnosis.models import AccessEvent, Case, CaseReport, Patient, Prediction, Review
from diagnosis.selectors import (
    case_get,
    case_get_bare,
    case_list,
    case_report_get,
    case_scan_list,
    patient_get,
    patient_list,
    prediction_get,
    prediction_get_for_api,
    prediction_list_for_api,
    scan_get,
)
from diagnosis.services.accounts import token_create, token_revoke, token_revoke_all
from diagnosis.services.cases import case_create, case_create_for_identifier, case_update
from diagnosis.services.database import once_more_on_a_fresh_connection
from diagnosis.services.history import access_record
from diagnosis.services.patients import patient_create, patient_update
from diagnosis.services.predictions import prediction_request
from diagnosis.services.reviews import review_create
from diagnosis.services.scans import scan_upload
from diagnosis.services.signoff import (
    case_reopen,
    case_sign_off,
    prediction_mark_not_used,
    prediction_use_again,
)
from diagnosis.views import heatmap_response, report_response, scan_file_response
from ml.models import ModelVersion


class ErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input."),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="Not allowed."),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or not yours."),
    409: OpenApiResponse(ErrorSerializer, description="The case is signed off, or not ready for this."),
}


def errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


def validated(serializer_class: type[serializers.Serializer], data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# A paginated, filtered and ordered list; the subclass supplies the rows (from a selector) and a FilterSet.
class ListApi(GenericAPIView):
    pagination_class = Pagination
    filter_backends = [DjangoFilterBackend]
    filterset_class: type[FilterSet]
    OutputSerializer: type[serializers.Serializer]

    @property
    def queryset(self) -> QuerySet:
        # drf-spectacular finds the filters' types through the view's model; the rows a user gets always
        # come from a selector, scoped to that user.
        return self.filterset_class._meta.model.objects.none()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return self.OutputSerializer

    def initial(self, request: Request, *args, **kwargs) -> None:
        # Authentication (a token lookup) and the permission checks only read, so a connection the database
        # dropped before the handler runs costs them a second try on a fresh one, not the upload.
        once_more_on_a_fresh_connection(lambda: super(ListApi, self).initial(request, *args, **kwargs))

    def list_response(self, request: Request, queryset: QuerySet) -> Response:
        # A request naming none of the filters (most do not) skips building and validating the filter form:
        # with every value empty it would return the queryset as it is, and it took a tenth of a plain list.
        if request.query_params.keys() & self.filterset_class.base_filters.keys():
            queryset = self.filter_queryset(queryset)
        page = self.paginate_queryset(queryset)
        data = self.OutputSerializer(page, many=True, context={"request": request}).data
        return self.get_paginated_response(data)


class IgnoreAccept(BaseContentNegotiation):
    """File views answer with the file's own type whatever the client accepts; errors stay JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


BINARY = OpenApiTypes.BINARY


# Authentication ------------------------------------------------------------------------------------------


# Axes counts each failure: the form passes the request on to `authenticate`. Once the account or the
# address is locked out, axes' middleware answers 429 in the error shape (diagnosis.lockout).
class TokenObtainApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    class TokenOutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expiry = serializers.DateTimeField(help_text="When the token stops working (ISO 8601).")

    @extend_schema(
        request=TokenInputSerializer,
        responses={
            200: TokenOutputSerializer,
            **errors(400),
            429: OpenApiResponse(ErrorSerializer, description="Too many failed attempts."),
        },
        auth=[],
        summary="Exchange a username and password for an API token that expires",
        description="Failed attempts are counted per account and per address; too many within the window "
        "lock log-ins out (429) until it has passed.",
    )
    def post(self, request: Request) -> Response:
        credentials = validated(self.TokenInputSerializer, request.data)
        form = AuthenticationForm(request._request, data=credentials)
        if not form.is_valid():
            messages = [str(message) for message in form.non_field_errors()]
            return error_response("Unable to log in with these credentials.", {"non_field_errors": messages})
        return Response(self.TokenOutputSerializer(token_create(user=form.get_user())).data)


class TokenLogoutApi(APIView):
    # Only a token names the token to end; a browser session ends at /accounts/logout/.
    authentication_classes = [TokenAuthentication]

    @extend_schema(
        request=None, responses={204: None, **errors(401)}, summary="End the token of this request"
    )
    def post(self, request: Request) -> Response:
        token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenLogoutAllApi(APIView):
    @extend_schema(request=None, responses={204: None, **errors(401, 403)}, summary="End all your API tokens")
    def post(self, request: Request) -> Response:
        token_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Patients ------------------------------------------------------------------------------------------------


class PatientInputSerializer(serializers.Serializer):
    identifier = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(choices=Patient.Sex.choices, required=False, allow_blank=True)


class PatientListApi(ListApi):
    OutputSerializer = PatientOutputSerializer
    filterset_class = PatientFilter

    @extend_schema(responses={200: PatientOutputSerializer(many=True), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        if search := request.query_params.get("search", "").strip()[:100]:
            access_record(
                user=request.user, obj=None, action=AccessEvent.Action.SEARCH_PATIENTS, detail=search
            )
        return self.list_response(request, patient_list(user=request.user))

    @extend_schema(
        request=PatientInputSerializer, responses={201: PatientOutputSerializer, **errors(400, 401, 403)}
    )
    def post(self, request: Request) -> Response:
        patient = patient_create(user=request.user, **validated(PatientInputSerializer, request.data))
        return Response(PatientOutputSerializer(patient).data, status=status.HTTP_201_CREATED)


class PatientDetailApi(APIView):
    @extend_schema(responses={200: PatientOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        patient = patient_get(user=request.user, pk=pk)
        access_record(user=request.user, obj=patient, action=AccessEvent.Action.VIEW_PATIENT)
        return Response(PatientOutputSerializer(patient).data)

    @extend_schema(
        request=PatientInputSerializer(partial=True),
        responses={200: PatientOutputSerializer, **errors(400, 401, 404)},
    )
    def patch(self, request: Request, pk: int) -> Response:
        patient = patient_get(user=request.user, pk=pk)
        changes = validated(PatientInputSerializer, request.data, partial=True)
        patient = patient_update(user=request.user, patient=patient, **changes)
        return Response(PatientOutputSerializer(patient).data)


# Cases ---------------------------------------------------------------------------------------------------


class CaseListApi(ListApi):
    OutputSerializer = CaseOutputSerializer
    filterset_class = CaseFilter

    class CaseCreateInputSerializer(serializers.Serializer):
        patient = id_field(required=False, help_text="One of your patients, by id.")
        patient_identifier = serializers.CharField(
            required=False,
            max_length=64,
            help_text="Any registered patient, by their exact identifier (case and spaces aside); the "
            "lookup is logged.",
        )
        clinical_question = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
        notes = serializers.CharField(required=False, allow_blank=True, max_length=10_000)

        def validate(self, data: dict) -> dict:
            if ("patient" in data) == ("patient_identifier" in data):
                raise serializers.ValidationError(
                    {"patient": ["Give either patient (an id) or patient_identifier, not both."]}
                )
            return data

    @extend_schema(responses={200: CaseOutputSerializer(many=True), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        return self.list_response(request, case_list(user=request.user).prefetch_related(CASE_REPORTS))

    @extend_schema(
        request=CaseCreateInputSerializer, responses={201: CaseOutputSerializer, **errors(400, 401, 403)}
    )
    def post(self, request: Request) -> Response:
        data = validated(self.CaseCreateInputSerializer, request.data)
        if "patient_identifier" in data:
            try:
                case = case_create_for_identifier(
                    user=request.user, identifier=data.pop("patient_identifier"), **data
                )
            except ApplicationError as exc:
                if "identifier" not in exc.errors:
                    raise
                raise serializers.ValidationError({"patient_identifier": exc.errors["identifier"]}) from None
            return Response(CaseOutputSerializer(case).data, status=status.HTTP_201_CREATED)
        try:
            patient = patient_get(user=request.user, pk=data.pop("patient"))
        except NotFound as exc:
            raise serializers.ValidationError({"patient": [exc.message]}) from None
        case = case_create(user=request.user, patient=patient, **data)
        return Response(CaseOutputSerializer(case).data, status=status.HTTP_201_CREATED)


# What the case representation lists of its reports, with their signers' and reopeners' usernames: one
# query for a page, however many of its cases were signed off, of only the columns the list shows (all of
# two users' columns were a third of that query's time).
CASE_REPORTS = Prefetch(
    "reports",
    queryset=CaseReport.objects.select_related("signed_by", "reopened_by").only(
        "case",
        "version",
        "conclusion",
        "signed_at",
        "reopened_at",
        "reopen_reason",
        f"signed_by__{get_user_model().USERNAME_FIELD}",
        f"reopened_by__{get_user_model().USERNAME_FIELD}",
    ),
)


def case_output(request: Request, pk: int) -> dict:
    case = case_get(user=request.user, pk=pk)
    return CaseOutputSerializer(case, context={"request": request}).data


class CaseDetailApi(APIView):
    class CaseUpdateInputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=Case.Status.choices,
            required=False,
            help_text="Accepted only unchanged: sign-off/ and reopen/ change it.",
        )
        clinical_question = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
        notes = serializers.CharField(required=False, allow_blank=True, max_length=10_000)

    @extend_schema(responses={200: CaseOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        access_record(user=request.user, obj=case, action=AccessEvent.Action.VIEW_CASE)
        return Response(CaseOutputSerializer(case, context={"request": request}).data)

    @extend_schema(
        request=CaseUpdateInputSerializer, responses={200: CaseOutputSerializer, **errors(400, 401, 404, 409)}
    )
    def patch(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        case_update(user=request.user, case=case, **validated(self.CaseUpdateInputSerializer, request.data))
        return Response(case_output(request, pk))


class CaseSignOffApi(APIView):
    class SignOffInputSerializer(serializers.Serializer):
        conclusion = serializers.CharField(max_length=10_000, help_text="Printed on the signed report.")

    @extend_schema(
        request=SignOffInputSerializer,
        responses={200: CaseOutputSerializer, **errors(400, 401, 404, 409)},
        summary="Sign the case off and issue its next report version",
        description="Every current prediction (the latest of each scan) must be reviewed or marked not "
        "used; otherwise 409, with what blocks under errors.predictions. The PDF is rendered before this "
        "answers.",
    )
    def post(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        case_sign_off(user=request.user, case=case, **validated(self.SignOffInputSerializer, request.data))
        return Response(case_output(request, pk))


class CaseReopenApi(APIView):
    class ReopenInputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000, help_text="Kept with the report version reopened.")

    @extend_schema(
        request=ReopenInputSerializer,
        responses={200: CaseOutputSerializer, **errors(400, 401, 404, 409)},
        summary="Reopen a signed-off case to amend it; its next sign-off is the next report version",
    )
    def post(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        case_reopen(user=request.user, case=case, **validated(self.ReopenInputSerializer, request.data))
        return Response(case_output(request, pk))


class CaseReportApi(APIView):
    content_negotiation_class = IgnoreAccept

    class ReportQuerySerializer(serializers.Serializer):
        version = id_field(required=False, help_text="A report version; the latest when left out.")

    @extend_schema(
        parameters=[ReportQuerySerializer],
        responses={(200, "application/pdf"): BINARY, **errors(400, 401, 404)},
        summary="The signed PDF report of the case: the latest version, or ?version=N",
        operation_id="cases_report_retrieve",
    )
    def get(self, request: Request, pk: int):
        case = case_get(user=request.user, pk=pk)
        version = validated(self.ReportQuerySerializer, request.query_params).get("version")
        report = case_report_get(case=case, version=version)
        access_record(user=request.user, obj=report, action=AccessEvent.Action.DOWNLOAD_REPORT)
        return report_response(report)


# Scans ---------------------------------------------------------------------------------------------------


class CaseScanListApi(ListApi):
    OutputSerializer = ScanOutputSerializer
    filterset_class = ScanFilter
    parser_classes = [MultiPartParser, FormParser]

    class ScanUploadInputSerializer(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True, help_text="A PNG, JPEG or DICOM image.")

    @extend_schema(responses={200: ScanOutputSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        case = case_get_bare(user=request.user, pk=pk)
        access_record(user=request.user, obj=case, action=AccessEvent.Action.VIEW_CASE)
        return self.list_response(request, case_scan_list(case=case))

    @extend_schema(
        request={"multipart/form-data": ScanUploadInputSerializer},
        responses={
            201: OpenApiResponse(
                ScanUploadOutputSerializer, description="A new scan, its prediction queued."
            ),
            200: OpenApiResponse(
                ScanUploadOutputSerializer,
                description="These bytes were already uploaded (a stored file gone missing is restored).",
            ),
            **errors(400, 401, 404, 409),
            415: OpenApiResponse(ErrorSerializer, description="Not a multipart upload."),
            503: OpenApiResponse(ErrorSerializer, description="No database at the moment; nothing stored."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        # The whole answer, not only the upload, survives a dropped connection: an upload is safe to repeat.
        return once_more_on_a_fresh_connection(lambda: self._upload(request, pk))

    def _upload(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        uploaded_file = validated(self.ScanUploadInputSerializer, request.data)["file"]
        result = scan_upload(user=request.user, case=case, uploaded_file=uploaded_file)
        result.scan.prediction = result.prediction
        data = ScanUploadOutputSerializer(result.scan, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class ScanDetailApi(APIView):
    @extend_schema(responses={200: ScanOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        scan = scan_get(user=request.user, pk=pk)
        access_record(user=request.user, obj=scan, action=AccessEvent.Action.VIEW_SCAN)
        return Response(ScanOutputSerializer(scan, context={"request": request}).data)


class ScanFileApi(APIView):
    content_negotiation_class = IgnoreAccept

    @extend_schema(
        responses={
            (200, "image/png"): BINARY,
            (200, "image/jpeg"): BINARY,
            (200, "application/dicom"): BINARY,
            **errors(401, 404),
        },
        summary="The stored scan file (DICOM de-identified)",
    )
    def get(self, request: Request, pk: int):
        return scan_file_response(scan_get(user=request.user, pk=pk), user=request.user)


# Predictions ---------------------------------------------------------------------------------------------


class PredictionListApi(ListApi):
    OutputSerializer = PredictionOutputSerializer
    filterset_class = PredictionFilter

    @extend_schema(responses={200: PredictionOutputSerializer(many=True), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        return self.list_response(request, prediction_list_for_api(user=request.user))


class PredictionDetailApi(APIView):
    @extend_schema(responses={200: PredictionOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        prediction = prediction_get_for_api(user=request.user, pk=pk)
        access_record(user=request.user, obj=prediction, action=AccessEvent.Action.VIEW_PREDICTION)
        return Response(PredictionOutputSerializer(prediction, context={"request": request}).data)


class PredictionHeatmapApi(APIView):
    content_negotiation_class = IgnoreAccept

    @extend_schema(
        responses={(200, "image/png"): BINARY, **errors(401, 404)},
        summary="The heatmap overlay; 404 until the prediction has one",
    )
    def get(self, request: Request, pk: int):
        return heatmap_response(prediction_get(user=request.user, pk=pk), user=request.user)


def model_version_find(reference: str) -> ModelVersion:
    """A model named by its id or its name."""
    reference = reference.strip()
    found = ModelVersion.objects.filter(name=reference).first()
    if found is None and reference.isdigit() and len(reference) < 19:
        found = ModelVersion.objects.filter(pk=int(reference)).first()
    if found is None:
        raise serializers.ValidationError({"model": [f"No model version {reference!r}."]})
    return found


class PredictionRerunApi(APIView):
    class RerunInputSerializer(serializers.Serializer):
        model = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=100,
            help_text="A model version id or name; empty: the active model.",
        )

    @extend_schema(
        request=RerunInputSerializer,
        responses={201: PredictionOutputSerializer, **errors(400, 401, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        prediction = prediction_get(user=request.user, pk=pk)
        reference = validated(self.RerunInputSerializer, request.data).get("model", "")
        model_version = model_version_find(reference) if reference else None
        rerun = prediction_request(user=request.user, scan=prediction.scan, model_version=model_version)
        rerun = prediction_get_for_api(user=request.user, pk=rerun.pk)
        data = PredictionOutputSerializer(rerun, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


class ReviewLevelInputSerializer(serializers.Serializer):
    """Checked by the service against the prediction's own levels, with one message per item."""

    level = serializers.CharField(help_text="L3-L4, L4-L5 or L5-S1, as the prediction has them.")
    grade = serializers.IntegerField(help_text="Pfirrmann grade 1-5.")


class PredictionReviewApi(APIView):
    class ReviewInputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(
            choices=Review.Decision.choices,
            required=False,
            help_text="Required for a prediction without levels; with levels it follows the grades.",
        )
        final_label = serializers.ChoiceField(
            choices=Prediction.Label.choices, required=False, allow_blank=True
        )
        comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
        levels = ReviewLevelInputSerializer(
            many=True,
            required=False,
            help_text="The clinician's grade per level of the prediction; a level left out keeps the "
            "model's grade.",
        )

    @extend_schema(
        request=ReviewInputSerializer,
        responses={201: ReviewOutputSerializer, **errors(400, 401, 404, 409)},
        summary="Review a prediction; again to amend your review (a new version, the old one kept)",
        description="By the case owner: the case's review. By a clinician the case is referred to: their "
        "second opinion. Reviews are never edited in place; the history keeps every version.",
    )
    def post(self, request: Request, pk: int) -> Response:
        prediction = prediction_get(user=request.user, pk=pk)
        review = review_create(
            user=request.user, prediction=prediction, **validated(self.ReviewInputSerializer, request.data)
        )
        return Response(ReviewOutputSerializer(review).data, status=status.HTTP_201_CREATED)


class PredictionNotUsedApi(APIView):
    class NotUsedInputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(
        request=NotUsedInputSerializer,
        responses={201: PredictionOutputSerializer, **errors(400, 401, 404, 409)},
        summary="Leave the scan's current prediction out of the sign-off, with the reason",
    )
    def post(self, request: Request, pk: int) -> Response:
        prediction = prediction_get(user=request.user, pk=pk)
        reason = validated(self.NotUsedInputSerializer, request.data)["reason"]
        prediction_mark_not_used(user=request.user, prediction=prediction, reason=reason)
        prediction = prediction_get_for_api(user=request.user, pk=pk)
        data = PredictionOutputSerializer(prediction, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={204: None, **errors(401, 404, 409)},
        summary="Use the prediction again: the sign-off waits for its review",
    )
    def delete(self, request: Request, pk: int) -> Response:
        prediction_use_again(user=request.user, prediction=prediction_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Models --------------------------------------------------------------------------------------------------


class ModelVersionListApi(ListApi):
    OutputSerializer = ModelVersionOutputSerializer
    filterset_class = ModelVersionFilter

    @extend_schema(responses={200: ModelVersionOutputSerializer(many=True), **errors(400, 401)})
    def get(self, request: Request) -> Response:
        return self.list_response(request, ModelVersion.objects.order_by("-is_active", "name"))


class NotFoundApi(APIView):
    """Unknown API paths answer in the API's error shape rather than with an HTML page."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    schema = None

    def get(self, request: Request, *args, **kwargs) -> Response:
        return error_response("No such API endpoint.", {}, status.HTTP_404_NOT_FOUND)

    post = put = patch = delete = head = options = get
