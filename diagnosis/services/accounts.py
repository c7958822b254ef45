from __future__ import annotations

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from diagnosis.errors import ApplicationError
from diagnosis.models import CLINICIANS_GROUP


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
