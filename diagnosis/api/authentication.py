"""API token authentication: django-rest-knox's, answering a token that is not text with a 401 and checking
only the presented token's expiry."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.models import AuthToken
from knox.signals import token_expired
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox decodes the header's token as UTF-8 unguarded: `Authorization: Token \\xff` would be a 500."""

    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)

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


class TokenScheme(KnoxTokenScheme):
    """The schema's description of this class, under the name DRF's token scheme had."""

    target_class = "diagnosis.api.authentication.TokenAuthentication"
    name = "tokenAuth"
