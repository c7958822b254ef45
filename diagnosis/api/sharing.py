"""The case's history and its second opinions: who changed or opened what, and referrals to colleagues."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from diagnosis.api.pagination import Pagination
from diagnosis.api.serializers import HistoryEntrySerializer, ReferralOutputSerializer
from diagnosis.api.views import errors, validated
from diagnosis.models import AccessEvent, Referral
from diagnosis.selectors import case_get, case_history, referral_get, referral_list
from diagnosis.services.history import access_record
from diagnosis.services.referrals import referral_create, referral_withdraw


class CaseHistoryApi(GenericAPIView):
    pagination_class = Pagination
    serializer_class = HistoryEntrySerializer

    @extend_schema(
        responses={200: HistoryEntrySerializer(many=True), **errors(401, 404)},
        summary="The case's timeline, newest first: every change and every access",
    )
    def get(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        access_record(user=request.user, obj=case, action=AccessEvent.Action.VIEW_HISTORY)
        page = self.paginate_queryset(case_history(case=case))
        return self.get_paginated_response(HistoryEntrySerializer(page, many=True).data)


class CaseReferralListApi(GenericAPIView):
    pagination_class = Pagination
    serializer_class = ReferralOutputSerializer
    queryset = Referral.objects.none()

    class ReferralInputSerializer(serializers.Serializer):
        clinician = serializers.CharField(max_length=150, help_text="The colleague's username.")
        note = serializers.CharField(
            required=False, allow_blank=True, max_length=Referral._meta.get_field("note").max_length
        )

    @extend_schema(
        responses={200: ReferralOutputSerializer(many=True), **errors(401, 404)},
        summary="The case's referrals, withdrawn ones included (a referred clinician sees their own)",
    )
    def get(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        page = self.paginate_queryset(referral_list(user=request.user, case=case))
        return self.get_paginated_response(ReferralOutputSerializer(page, many=True).data)

    @extend_schema(
        request=ReferralInputSerializer,
        responses={201: ReferralOutputSerializer, **errors(400, 401, 403, 404)},
        summary="Refer the case to a colleague for a second opinion",
    )
    def post(self, request: Request, pk: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        referral = referral_create(
            user=request.user, case=case, **validated(self.ReferralInputSerializer, request.data)
        )
        return Response(ReferralOutputSerializer(referral).data, status=status.HTTP_201_CREATED)


class CaseReferralDetailApi(APIView):
    @extend_schema(
        responses={200: ReferralOutputSerializer, **errors(400, 401, 403, 404)},
        summary="Withdraw a referral: the colleague's access ends; their opinions stay on record",
    )
    def delete(self, request: Request, pk: int, referral_id: int) -> Response:
        case = case_get(user=request.user, pk=pk)
        referral = referral_get(user=request.user, case=case, pk=referral_id)
        referral = referral_withdraw(user=request.user, referral=referral)
        return Response(ReferralOutputSerializer(referral).data)
