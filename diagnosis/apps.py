from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_save


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = "Diagnosis"

    def ready(self) -> None:
        from diagnosis.signals import user_credentials_changed

        pre_save.connect(
            user_credentials_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="user-credentials-changed"
        )
