"""API token authentication: django-rest-knox's, answering a token that is not text with a 401, checking
only the presented token's expiry, and loading the user's clinicians-group membership with the token."""

from __future__ import annotations

import binascii
from functools import cache
from hmac import compare_digest

from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken, get_token_model
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework import exceptions

from diagnosis.models import CLINICIANS_GROUP


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        """Knox's, with two changes. Knox decodes the header's token as UTF-8 unguarded (`Authorization:
        Token \\xff` would be a 500). And the token's query also answers whether its user is a clinician,
        which diagnosis.selectors.user_is_clinician would otherwise look up in a second query on every
        request (as diagnosis.backends does for a session's user)."""
        invalid = exceptions.AuthenticationFailed("Invalid token.")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid from None
        candidates = _tokens_with_users().filter(token_key=text[: CONSTANTS.TOKEN_KEY_LENGTH])
        for auth_token in candidates:
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(text)
            except (TypeError, binascii.Error):
                raise invalid from None
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                auth_token.user._is_clinician = auth_token.user_in_clinicians_group
                return self.validate_user(auth_token)
        raise invalid

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        """True (and the token deleted) when the presented token has expired. Knox also reads every token
        of the user here to delete their expired ones, a query on every request; the worker's beat deletes
        all expired tokens instead (diagnosis.tasks.purge_expired_tokens)."""
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=self.__class__, username=username, source="auth_token")
        return True


@cache
def _tokens_with_users() -> QuerySet[AuthToken]:
    """The tokens with their users and whether each user is a clinician, never evaluated itself: each
    request filters a copy. Built once per process: building the annotation took 0.36 ms of every API
    request."""
    in_group = Group.objects.filter(name=CLINICIANS_GROUP, user=OuterRef("user_id"))
    return (
        get_token_model().objects.select_related("user").annotate(user_in_clinicians_group=Exists(in_group))
    )


class TokenScheme(KnoxTokenScheme):
    """The schema's description of this class, under the name DRF's token scheme had."""

    target_class = "diagnosis.api.authentication.TokenAuthentication"
    name = "tokenAuth"
