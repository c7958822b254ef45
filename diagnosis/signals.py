"""What a user was granted with their old credentials ends when those credentials change."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from diagnosis.services.accounts import session_end_all, token_revoke_all

WATCHED_FIELDS = {"password", "is_active"}


def user_credentials_changed(
    sender: type[AbstractBaseUser],
    instance: AbstractBaseUser,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs,
) -> None:
    """Before a user is saved with a new password hash, or deactivated, end all their API tokens; on
    deactivation, end their web sessions too.

    A receiver rather than a service that every password change calls, because most of those paths are
    Django's code, not ours: the password change page, the admin's password form and its user page (where
    a user is deactivated), `manage.py changepassword`, `set_password()` in a shell. All of them end in
    `User.save()`, so this one place covers them and any path added later, where a service would need
    each one rerouted. It runs before the save: a failure between the two leaves the tokens ended, never a
    new password beside live old tokens. A bulk `QuerySet.update()` skips it, as it skips every signal.

    A password change needs nothing more for web sessions: Django's session auth hash already ends them.
    A deactivated user's sessions are refused too, but would come back to life on reactivation.
    Django re-hashing a password when its hasher is upgraded changes the hash too: the user's tokens end
    once then, which errs on the safe side."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not WATCHED_FIELDS & set(update_fields):
        return
    previous = sender._default_manager.filter(pk=instance.pk).values("password", "is_active").first()
    if previous is None:
        return
    deactivated = previous["is_active"] and not instance.is_active
    if deactivated or previous["password"] != instance.password:
        token_revoke_all(user=instance)
    if deactivated:
        session_end_all(user=instance)
