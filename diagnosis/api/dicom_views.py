"""API views for DICOM: upload several files or a ZIP as series, read a series, pick its slice; the
incoming list of series received for no case, and attaching one to a case."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from diagnosis.api.errors import error_response
from diagnosis.api.filters import IncomingSeriesFilter, SeriesFilter, id_field
from diagnosis.api.serializers import (
    IncomingSeriesOutputSerializer,
    PredictionOutputSerializer,
    SeriesOutputSerializer,
)
from diagnosis.api.views import BINARY, ErrorSerializer, IgnoreAccept, ListApi, errors, validated
from diagnosis.errors import NotFound
from diagnosis.selectors import (
    case_get,
    case_get_bare,
    incoming_get,
    incoming_list,
    prediction_get,
    prediction_get_for_api,
    series_get,
    series_list,
)
from diagnosis.services.database import once_more_on_a_fresh_connection
from diagnosis.services.dicom_reports import dicom_bytes, prediction_dicom_results
from diagnosis.services.receiving import incoming_attach
from diagnosis.services.series import series_choose_slice, series_upload


class FileOutcomeSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    created = serializers.BooleanField()
    scan = serializers.IntegerField(allow_null=True)
    series = serializers.IntegerField(allow_null=True)


class SeriesUploadOutputSerializer(serializers.Serializer):
    files = FileOutcomeSerializer(many=True)
    series = SeriesOutputSerializer(many=True)


class CaseSeriesListApi(ListApi):
    OutputSerializer = SeriesOutputSerializer
    filterset_class = SeriesFilter
    parser_classes = [MultiPartParser, FormParser]

    class SeriesUploadInputSerializer(serializers.Serializer):
        file = serializers.ListField(
            child=serializers.FileField(allow_empty_file=True),
            allow_empty=False,
            max_length=5000,
            help_text="DICOM files (the instances of one or more series), ZIPs of a study folder, or images.",
        )

    @extend_schema(responses={200: SeriesOutputSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        case = case_get_bare(user=request.user, pk=pk)
        return self.list_response(request, series_list(user=request.user).filter(case=case))

    @extend_schema(
        request={"multipart/form-data": SeriesUploadInputSerializer},
        responses={
            201: OpenApiResponse(SeriesUploadOutputSerializer, description="Something new was stored."),
            200: OpenApiResponse(SeriesUploadOutputSerializer, description="Everything was there already."),
            **errors(400, 401, 404),
            415: OpenApiResponse(ErrorSerializer, description="Not a multipart upload."),
        },
        summary="Upload the files of DICOM series at once (or ZIPs); each series becomes one series",
        description="A file that cannot be read is reported in `files` with its error; the others are "
        "stored. The mid-sagittal slice of each sagittal series gets a prediction; other planes are recorded "
        "not assessable. 400 when no file could be stored.",
    )
    def post(self, request: Request, pk: int) -> Response:
        return once_more_on_a_fresh_connection(lambda: self._upload(request, pk))

    def _upload(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        files = validated(self.SeriesUploadInputSerializer, {"file": request.FILES.getlist("file")})["file"]
        result = series_upload(user=request.user, case=case, uploaded_files=files)
        outcomes = [
            {
                "name": f.name,
                "ok": not f.error,
                "error": f.error,
                "created": f.created,
                "scan": f.scan.pk if f.scan else None,
                "series": f.series.pk if f.series else None,
            }
            for f in result.files
        ]
        series = series_list(user=request.user).filter(pk__in=[s.series.pk for s in result.series])
        if not result.stored_anything:
            return error_response("No file could be stored.", {"file": [f.error for f in result.files]})
        series = series_list(user=request.user).filter(pk__in=[s.series.pk for s in result.series])
        data = {"files": outcomes, "series": SeriesOutputSerializer(series, many=True).data}
        return Response(data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class SeriesDetailApi(APIView):
    @extend_schema(responses={200: SeriesOutputSerializer, **errors(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        return Response(SeriesOutputSerializer(series_get(user=request.user, pk=pk)).data)


class SeriesSliceApi(APIView):
    class SliceInputSerializer(serializers.Serializer):
        scan = id_field(help_text="The id of the slice (a scan of this series) to run the prediction on.")

    @extend_schema(
        request=SliceInputSerializer,
        responses={201: PredictionOutputSerializer, **errors(400, 401, 404)},
        summary="Run the prediction on another slice of the series",
    )
    def post(self, request: Request, pk: int) -> Response:
        series = series_get(user=request.user, pk=pk)
        scan_id = validated(self.SliceInputSerializer, request.data)["scan"]
        scan = series.slices.filter(pk=scan_id).first()
        if scan is None:
            raise serializers.ValidationError({"scan": ["Not a slice of this series."]})
        prediction = series_choose_slice(user=request.user, series=series, scan=scan)
        prediction = prediction_get_for_api(user=request.user, pk=prediction.pk)
        data = PredictionOutputSerializer(prediction, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


class IncomingSeriesListApi(ListApi):
    OutputSerializer = IncomingSeriesOutputSerializer
    filterset_class = IncomingSeriesFilter

    @extend_schema(
        responses={200: IncomingSeriesOutputSerializer(many=True), **errors(400, 401)},
        summary="Series received over the network for no case, waiting to be attached",
    )
    def get(self, request: Request) -> Response:
        return self.list_response(request, incoming_list(user=request.user))


class IncomingSeriesAttachApi(APIView):
    class AttachInputSerializer(serializers.Serializer):
        case = id_field(help_text="An open case you may add scans to.")

    @extend_schema(
        request=AttachInputSerializer,
        responses={201: SeriesOutputSerializer, **errors(400, 401, 404)},
        summary="Attach a waiting series to a case: de-identified and stored like an upload",
    )
    def post(self, request: Request, pk: int) -> Response:
        incoming = incoming_get(user=request.user, pk=pk)
        case_id = validated(self.AttachInputSerializer, request.data)["case"]
        try:
            case = case_get(user=request.user, pk=case_id)
        except NotFound as exc:
            raise serializers.ValidationError({"case": [exc.message]}) from None
        stored = incoming_attach(user=request.user, incoming=incoming, case=case)
        series = series_get(user=request.user, pk=stored.series.pk)
        return Response(SeriesOutputSerializer(series).data, status=status.HTTP_201_CREATED)


class PredictionReportApi(APIView):
    content_negotiation_class = IgnoreAccept

    @extend_schema(
        responses={(200, "application/dicom"): BINARY, **errors(400, 401, 404)},
        summary="The finished prediction as a DICOM Structured Report (TID 1500)",
        description="References the slice the prediction was made on and carries the outcome, the DDD "
        "probability, each disc level's finding site, Pfirrmann grade and probabilities, the model and, once "
        "reviewed, the clinician's decision. 400 for a prediction not finished or not made on a DICOM image.",
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        prediction = prediction_get(user=request.user, pk=pk)
        results = prediction_dicom_results(prediction=prediction)
        response = HttpResponse(dicom_bytes(results.report), content_type="application/dicom")
        response["Content-Disposition"] = f'attachment; filename="prediction-{prediction.pk}-sr.dcm"'
        response["X-Content-Type-Options"] = "nosniff"
        return response
