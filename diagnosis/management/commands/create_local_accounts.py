from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from diagnosis.services.accounts import clinician_create

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


class Command(BaseCommand):
    help = (
        "For a local run only (a site that answers on loopback hosts only): create an 'admin' superuser "
        "and a 'clinician' account once, with "
        "random passwords kept in var/local-accounts.txt, and print how to log in."
    )

    def handle(self, *args, **options) -> None:
        # DEBUG is off under `make run` too, so what marks a local run is a site no other host can name.
        if not set(settings.ALLOWED_HOSTS) <= LOOPBACK_HOSTS:
            raise CommandError(
                "create_local_accounts is for a local run: ALLOWED_HOSTS must name only 127.0.0.1, localhost "
                "or [::1]."
            )
        credentials = settings.VAR_DIR / "local-accounts.txt"
        User = get_user_model()
        if not User.objects.filter(username__in=["admin", "clinician"]).exists():
            admin_password = secrets.token_urlsafe(12)
            clinician_password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "", admin_password)
            clinician_create(username="clinician", password=clinician_password)
            credentials.write_text(
                f"clinician  {clinician_password}  (clinician pages and API)\n"
                f"admin      {admin_password}  (staff: everything, and /admin/)\n"
            )
            credentials.chmod(0o600)
        # The address is make run's to print: it knows the host and port it starts the server on.
        self.stdout.write("Log in with one of these accounts (user, password):")
        if credentials.exists():
            self.stdout.write(credentials.read_text())
        else:
            self.stdout.write(
                "  the accounts exist; set a new password with: manage.py changepassword clinician"
            )
        self.stdout.write("Locked out after failed log-ins? manage.py axes_reset lets everyone in again.")
