from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from diagnosis.errors import ApplicationError
from diagnosis.models import CLINICIANS_GROUP

logger = logging.getLogger(__name__)


@transaction.atomic
def clinician_create(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    User = get_user_model()
    username = (username or "").strip()
    errors: dict[str, list[str]] = {}
    if not username:
        errors["username"] = ["A username is required."]
    elif User.objects.filter(username=username).exists():
        errors["username"] = [f"The username {username!r} is taken."]
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            errors["email"] = list(exc.messages)
    if not errors:
        try:
            password_validation.validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise ApplicationError("The clinician account could not be created.", errors)
    user = User.objects.create_user(username=username, email=email, password=password)
    group, _ = Group.objects.get_or_create(name=CLINICIANS_GROUP)
    user.groups.add(group)
    return user


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expiry: datetime


def token_create(*, user: AbstractBaseUser) -> IssuedToken:
    """A new API token; only its digest is stored, so this is the one time the token itself is seen."""
    instance, token = AuthToken.objects.create(user=user)
    return IssuedToken(token=token, expiry=instance.expiry)


def token_revoke(*, token: AuthToken) -> None:
    token.delete()


def token_revoke_all(*, user: AbstractBaseUser) -> int:
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


def token_purge_expired() -> int:
    """Delete every expired API token (run hourly by the worker's beat); the tokens are useless already,
    since authentication refuses an expired one, but they would otherwise stay stored for ever."""
    deleted, _ = AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    if deleted:
        logger.info("Deleted %d expired API tokens", deleted)
    return deleted


def session_end_all(*, user: AbstractBaseUser) -> int:
    """End the user's web sessions. The database keeps sessions unindexed by user, so each live one is
    decoded: fine for the rare deactivation this serves, not for every request."""
    user_id = str(user.pk)
    ended = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == user_id
    ]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)
