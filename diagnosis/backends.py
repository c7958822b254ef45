"""Log-in by username and password, with the clinicians-group check folded into the query that loads the
session's user on every request (instead of a second query on the first selector that asks)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef

from diagnosis.models import CLINICIANS_GROUP


class ClinicianModelBackend(ModelBackend):
    def get_user(self, user_id):
        in_group = Group.objects.filter(name=CLINICIANS_GROUP, user=OuterRef("pk"))
        user = (
            get_user_model()
            ._default_manager.annotate(in_clinicians_group=Exists(in_group))
            .filter(pk=user_id)
            .first()
        )
        if user is None or not self.user_can_authenticate(user):
            return None
        # What diagnosis.selectors.user_is_clinician would otherwise look up.
        user._is_clinician = user.in_clinicians_group
        return user
