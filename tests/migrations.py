"""Running the migrations to a point and back, for the tests of a data migration."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(targets: list[tuple[str, str]]) -> Apps:
    """Migrate the test database to `targets`; the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def migrate_to_latest() -> None:
    """Back to the latest migrations, as the other tests expect the database."""
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def legacy_owner_and_patient(apps: Apps) -> tuple:
    """A user and a patient of theirs, created with the models as they were at `apps`' state."""
    user = apps.get_model("auth", "User").objects.create(username="legacy")
    patient = apps.get_model("diagnosis", "Patient").objects.create(identifier="LEGACY-1", created_by=user)
    return user, patient


def legacy_scan(apps: Apps, *, number: int, case, uploaded_by, **fields):
    """A scan with the least a scan needs at `apps`' state (a 1x1 PNG's columns), unique by `number`."""
    return apps.get_model("diagnosis", "Scan").objects.create(
        case=case, file=f"{number}.png", original_name=f"{number}.png", sha256=f"{number:064d}",
        format="png", width=1, height=1, uploaded_by=uploaded_by, **fields,
    )  # fmt: skip
