from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MlConfig(AppConfig):
    name = "ml"
    verbose_name = "Machine learning"

    def ready(self) -> None:
        from ml.registry import register_shipped_models_after_migrate

        post_migrate.connect(register_shipped_models_after_migrate, sender=self)
