"""API token authentication: django-rest-knox's, answering a token that is not text with a 401."""

from __future__ import annotations

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox decodes the header's token as UTF-8 unguarded: `Authorization: Token \\xff` would be a 500."""

    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)


class TokenScheme(KnoxTokenScheme):
    """The schema's description of this class, under the name DRF's token scheme had."""

    target_class = "diagnosis.api.authentication.TokenAuthentication"
    name = "tokenAuth"
