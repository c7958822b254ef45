from __future__ import annotations

import getpass
import os

from django.core.management.base import BaseCommand, CommandError

from diagnosis.errors import ApplicationError
from diagnosis.services.accounts import clinician_create

PASSWORD_VARIABLE = "LUMBAR_CLINICIAN_PASSWORD"


class Command(BaseCommand):
    help = f"Create a clinician account. With --noinput the password comes from {PASSWORD_VARIABLE}."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def handle(self, *args, username: str, email: str, interactive: bool, **options) -> None:
        if interactive:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords differ.")
        else:
            password = os.environ.get(PASSWORD_VARIABLE, "")
            if not password:
                raise CommandError(f"With --noinput, set the password in {PASSWORD_VARIABLE}.")
        try:
            user = clinician_create(username=username, email=email, password=password)
        except ApplicationError as exc:
            details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.errors.items())
            raise CommandError(f"{exc.message} {details}".strip()) from None
        self.stdout.write(self.style.SUCCESS(f"Clinician {user.username} created."))
