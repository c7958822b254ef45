"""Scale benchmark (issue 12): how every page and list behaves as the data grows to a hospital's size.

It creates a PostgreSQL database of its own (``lumbar_scale_<pid>`` on the server --postgres names, a
loopback one), migrates it, seeds it with bulk inserts and drops it at the end (also on Ctrl-C). Full size
(L) is 10,000 patients, 20,000 cases, 50,000 scans with one prediction each and 24,500 reviews, one
clinician ("heavy") owning 80% of it and four others the rest; M is 10% of that and S 1%. Three of the
heavy clinician's cases hold 5, 30 and 120 scans; the other scans fall on the other cases at random. Most
predictions are done (a label and probability, or not assessable with a reason; three disc levels each when
assessable), a few queued, running or failed; reviews take whole cases, so reviewed cases are closed; about
half the failed runs and the unreviewed "not assessable" results are marked not used (an exclusion row).

Pages: Django's test client in this process, logged in as the heavy clinician and as staff, GETs each page
once to warm up and then --repeats times; it reports the median time and the most queries. The pages are
found in the URLconf: every diagnosis page without arguments or of one patient, one case (on each of the 5,
30 and 120-scan cases: the case page, its status.json, ...) or one model, every /api/v1/ list (a ListApi
view) alone, with each of its filters and with each ordering both ways, and (for staff) every admin
changelist. A route that does not answer a GET with 200 (one that takes only POST) is left out and named.

Load: gunicorn (3 workers, settings.base) on a free loopback port; `hey` (Debian package) with 16
connections for --load-seconds on each /api/v1/ list, unfiltered, as the heavy clinician with an API token,
after 64 untimed requests to the same list (each worker's first answer on a route is slower).

    .venv/bin/python bench/scale.py [--size S|M|L] [--json]

--json prints {"pages": {route: {size: {queries, ms}}}, "load": {route: {rps, p50_ms, p95_ms}}}; a route
is the user ("clinician" or "staff") and the path, with <id> for the record (and its scan count).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script: bench's modules and the project's apps

from bench.scratch_database import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    create_database,
    database_urls,
    drop_database,
)

LOOPBACK = "127.0.0.1"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
SIZES = {"S": 0.01, "M": 0.1, "L": 1.0}
FULL_SIZE = {"patients": 10_000, "cases": 20_000, "scans": 50_000, "reviews": 24_500}
BIG_CASES = (5, 30, 120)
HEAVY_SHARE = 0.8
EXCLUDED_SHARE = 0.5  # of failed runs and unreviewed "not assessable" results: marked not used
OTHER_CLINICIANS = 4
BATCH = 5_000
LOAD_CONNECTIONS = 16
WARM_UP_REQUESTS = 64
WEB_WORKERS = 3


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="S", help="S = 1%%, M = 10%%, L = 100%%")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per page (median)")
    parser.add_argument("--load-seconds", type=float, default=10.0, help="duration of each load run")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES_URL, help="a loopback PostgreSQL server")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.load_seconds <= 0:
        parser.error("--repeats and --load-seconds must be positive")
    return args


# SCALE_DATABASE_PREFIX keeps runs of several worktrees on one server apart by name.
DATABASE_NAME = f"{os.environ.get('SCALE_DATABASE_PREFIX', 'lumbar_scale')}_{os.getpid()}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lumbar_platform.settings.base")
if __name__ == "__main__":
    ARGS = _parse_args()
    ADMIN_URL, DATABASE_URL = database_urls(ARGS.postgres, DATABASE_NAME)
    # Settings read DATABASE_URL once, at set-up: this process only ever talks to its own database.
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["CELERY_BROKER_URL"] = os.environ.get("SCALE_BROKER_URL", DEFAULT_BROKER_URL)
    VAR_DIR = tempfile.mkdtemp(prefix="lumbar-scale-var-")  # the cache and logs of this run only
    os.environ["LUMBAR_VAR_DIR"] = VAR_DIR

    import django

    django.setup()

from django.contrib import admin  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import URLPattern, URLResolver, get_resolver, reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_filters import filters as django_filters  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from diagnosis.api.views import ListApi  # noqa: E402
from diagnosis.models import (  # noqa: E402
    CLINICIANS_GROUP,
    Case,
    Patient,
    Prediction,
    PredictionExclusion,
    PredictionLevel,
    Review,
    Scan,
)
from ml.models import ModelVersion  # noqa: E402

# Seeding -------------------------------------------------------------------------------------------------


@dataclass
class Population:
    """What the measurements need from the seeded data."""

    clinician: object
    staff: object
    patient_id: int
    big_cases: dict[int, int]  # scan count -> case id
    model_version_id: int
    search: str
    counts: dict[str, int] = field(default_factory=dict)


def counts_for(size: str) -> dict[str, int]:
    return {name: max(1, round(count * SIZES[size])) for name, count in FULL_SIZE.items()}


@contextmanager
def _explicit_timestamps(*model_classes: type[models.Model]) -> Iterator[None]:
    """auto_now(_add) would stamp every seeded row with the same moment; seeded rows carry their own."""
    switched = []
    for model in model_classes:
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, models.DateField) and (
                model_field.auto_now or model_field.auto_now_add
            ):
                switched.append((model_field, model_field.auto_now, model_field.auto_now_add))
                model_field.auto_now = model_field.auto_now_add = False
    try:
        yield
    finally:
        for model_field, auto_now, auto_now_add in switched:
            model_field.auto_now, model_field.auto_now_add = auto_now, auto_now_add


def _bulk(model: type[models.Model], rows: list[models.Model]) -> list[models.Model]:
    """Batched multi-row INSERTs through the ORM, so the model's own fields (and defaults) are used."""
    return model.objects.bulk_create(rows, batch_size=BATCH)


def _users() -> tuple[object, list[object], object]:
    user_model = get_user_model()
    group, _ = Group.objects.get_or_create(name=CLINICIANS_GROUP)
    clinicians = [
        user_model.objects.create_user(username=f"scale-{name}")
        for name in ("heavy", *(f"clinician{n}" for n in range(1, OTHER_CLINICIANS + 1)))
    ]
    group.user_set.add(*clinicians)
    staff = user_model.objects.create_user(username="scale-staff", is_staff=True, is_superuser=True)
    return clinicians[0], clinicians[1:], staff


def _grade_probabilities(rng: random.Random) -> tuple[int, list[float]]:
    weights = [rng.random() ** 3 for _ in range(5)]
    total = sum(weights)
    probabilities = [round(weight / total, 4) for weight in weights]
    return 1 + probabilities.index(max(probabilities)), probabilities


def _model_versions() -> list[ModelVersion]:
    """The registered models, active first; without any, an active INVGG and a retired VGG (rows only: their
    artifact folders do not exist, which the models page shows as a model without a card)."""
    versions = list(ModelVersion.objects.order_by("-is_active", "pk"))
    if versions:
        return versions
    return [
        ModelVersion.objects.create(
            name=f"scale-{architecture}",
            architecture=architecture,
            version="1",
            artifact_path=f"var/scale-models/{architecture}",
            input_size=224,
            is_active=active,
        )
        for architecture, active in (("invgg", True), ("vgg", False))
    ]


def _prediction(rng: random.Random, scan: Scan, versions: list[ModelVersion]) -> Prediction:
    queued = scan.uploaded_at + timedelta(seconds=rng.uniform(0.1, 2))
    draw = rng.random()
    prediction = Prediction(
        scan=scan,
        # Most by the first (active) model, the rest by the others: the models page compares them.
        model_version=versions[0] if rng.random() < 0.9 else rng.choice(versions),
        queued_at=queued,
        dispatched_at=queued + timedelta(milliseconds=50),
        attempts=1,
        input_sha256=scan.sha256,
    )
    if draw < 0.02:  # still waiting for a worker
        prediction.status, prediction.attempts = Prediction.Status.QUEUED, 0
        return prediction
    prediction.claimed_by, prediction.claimed_pid = "celery@scale", 4242
    prediction.started_at = queued + timedelta(seconds=rng.uniform(0.2, 5))
    if draw < 0.04:
        prediction.status = Prediction.Status.RUNNING
        return prediction
    prediction.finished_at = prediction.started_at + timedelta(seconds=rng.uniform(0.5, 3))
    if draw < 0.07:
        prediction.status, prediction.attempts = Prediction.Status.FAILED, 3
        prediction.error = "Worker lost while classifying the scan."
        return prediction
    prediction.status = Prediction.Status.DONE
    prediction.preprocess_ms, prediction.inference_ms = rng.uniform(5, 40), rng.uniform(80, 400)
    if draw < 0.09:
        prediction.label, prediction.reason = Prediction.Label.NOT_ASSESSABLE, "No lumbar disc found."
        return prediction
    prediction.probability = round(rng.random(), 4)
    threshold = prediction.model_version.threshold
    prediction.label = (
        Prediction.Label.DDD if prediction.probability >= threshold else Prediction.Label.NORMAL
    )
    return prediction


def _levels(rng: random.Random, prediction: Prediction) -> list[PredictionLevel]:
    levels = []
    for index, level in enumerate(PredictionLevel.Level.values):
        grade, probabilities = _grade_probabilities(rng)
        top = 250 + 60 * index
        levels.append(
            PredictionLevel(
                prediction=prediction,
                level=level,
                box=[200, top, 300, top + 40],
                grade=grade,
                grade_probabilities=probabilities,
                degenerated_probability=min(1.0, round(sum(probabilities[2:]), 4)),
            )
        )
    return levels


def seed(
    *, counts: dict[str, int], big_cases: tuple[int, ...] = BIG_CASES, random_seed: int = 12
) -> Population:
    """Seed users, patients, cases, scans, predictions, their levels and reviews in bulk (one transaction)."""
    rng = random.Random(random_seed)
    now = timezone.now()
    start = now - timedelta(days=730)
    n_patients = counts["patients"]
    n_cases = max(counts["cases"], len(big_cases))
    timestamped = (Patient, Case, Scan, Prediction, Review, PredictionExclusion)
    with transaction.atomic(), _explicit_timestamps(*timestamped):
        heavy, others, staff = _users()
        versions = _model_versions()

        def owner_for() -> object:
            return heavy if rng.random() < HEAVY_SHARE else rng.choice(others)

        patient_owners = [heavy, *(owner_for() for _ in range(n_patients - 1))]
        patients = _bulk(
            Patient,
            [
                Patient(
                    identifier=f"SC{index:06d}",
                    name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                    birth_date=datetime(1940, 1, 1).date() + timedelta(days=rng.randrange(25_000)),
                    sex=rng.choice(Patient.Sex.values),
                    created_by=owner,
                    created_at=start + timedelta(minutes=index * 700_000 // n_patients),
                    updated_at=start + timedelta(minutes=index * 700_000 // n_patients),
                )
                for index, owner in enumerate(patient_owners)
            ],
        )
        # Each patient's cases belong to whoever registered the patient; the first holds the big cases.
        case_patients = [patients[0]] * len(big_cases) + [
            patients[index * n_patients // (n_cases - len(big_cases))]
            for index in range(n_cases - len(big_cases))
        ]
        cases = _bulk(
            Case,
            [
                Case(
                    patient=patient,
                    owner=patient.created_by,
                    clinical_question="Low back pain radiating to the left leg; disc degeneration?",
                    created_at=patient.created_at + timedelta(hours=rng.uniform(1, 2_000)),
                    updated_at=patient.created_at + timedelta(hours=2_000),
                )
                for patient in case_patients
            ],
        )
        other_cases = cases[len(big_cases) :] or cases
        scan_cases = [case for case, size in zip(cases, big_cases, strict=False) for _ in range(size)]
        scan_cases += rng.choices(other_cases, k=max(0, counts["scans"] - len(scan_cases)))
        scans = _bulk(
            Scan,
            [
                Scan(
                    case=case,
                    file=f"scans/{case.pk}/scale-{index}.png",
                    original_name=f"IMG{index:06d}.png",
                    sha256=hashlib.sha256(f"scale-{index}".encode()).hexdigest(),
                    format=Scan.Format.PNG,
                    width=512,
                    height=512,
                    uploaded_by=case.owner,
                    uploaded_at=case.created_at + timedelta(minutes=rng.uniform(1, 60)),
                    modality="MR",
                    series_description="SAG T2",
                )
                for index, case in enumerate(scan_cases)
            ],
        )
        predictions = _bulk(Prediction, [_prediction(rng, scan, versions) for scan in scans])
        done = [p for p in predictions if p.status == Prediction.Status.DONE]
        _bulk(
            PredictionLevel, [level for p in done if p.probability is not None for level in _levels(rng, p)]
        )
        owners = {case.pk: case.owner for case in cases}
        reviews = _reviews(rng, done, counts["reviews"], owners)
        _bulk(Review, reviews)
        reviewed = {review.prediction_id for review in reviews}
        exclusions = _exclusions(rng, predictions, reviewed, owners)
        _bulk(PredictionExclusion, exclusions)
        _set_case_status(cases, predictions, reviewed, {e.prediction_id for e in exclusions})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum would have done by the time anyone looks
    by_size = {size: case.pk for size, case in zip(big_cases, cases, strict=False)}
    return Population(
        clinician=heavy,
        staff=staff,
        patient_id=patients[0].pk,
        big_cases=by_size,
        model_version_id=versions[0].pk,
        search=patients[len(patients) // 2].name.split()[-1][:4].lower(),
        counts={
            "patients": len(patients),
            "cases": len(cases),
            "scans": len(scans),
            "predictions": len(predictions),
            "reviews": len(reviews),
            "exclusions": len(exclusions),
        },
    )


def _reviews(
    rng: random.Random, done: list[Prediction], wanted: int, owners: dict[int, object]
) -> list[Review]:
    """Reviews by each case's owner (``owners``: case id -> user), case by case in random order, so a
    reviewed case is wholly reviewed."""
    by_case: dict[int, list[Prediction]] = defaultdict(list)
    for prediction in done:
        by_case[prediction.scan.case_id].append(prediction)
    order = list(by_case)
    rng.shuffle(order)
    reviews: list[Review] = []
    for case_id in order:
        for prediction in by_case[case_id]:
            if len(reviews) >= wanted:
                return reviews
            agree = rng.random() < 0.85 or prediction.label == Prediction.Label.NOT_ASSESSABLE
            other = (
                Prediction.Label.NORMAL if prediction.label == Prediction.Label.DDD else Prediction.Label.DDD
            )
            reviews.append(
                Review(
                    prediction=prediction,
                    reviewer=owners[case_id],
                    decision=Review.Decision.AGREE if agree else Review.Decision.OVERRIDE,
                    final_label=prediction.label if agree else other,
                    comment="" if agree else "Disc height preserved on my reading.",
                    created_at=prediction.finished_at + timedelta(hours=rng.uniform(1, 72)),
                )
            )
    return reviews


def _exclusions(
    rng: random.Random, predictions: list[Prediction], reviewed: set[int], owners: dict[int, object]
) -> list[PredictionExclusion]:
    """About half the failed runs and of the unreviewed "not assessable" results, marked not used by their
    case's owner (``owners``: case id -> user) with a reason, as a clinician clears them before signing a
    case off."""
    reasons = {
        Prediction.Status.FAILED: "The run failed; the scan was repeated.",
        Prediction.Label.NOT_ASSESSABLE: "Not a mid-sagittal slice.",
    }
    exclusions = []
    for prediction in predictions:
        kind = prediction.status if prediction.status == Prediction.Status.FAILED else prediction.label
        if kind in reasons and prediction.pk not in reviewed and rng.random() < EXCLUDED_SHARE:
            exclusions.append(
                PredictionExclusion(
                    prediction=prediction,
                    reason=reasons[kind],
                    excluded_by=owners[prediction.scan.case_id],
                    created_at=(prediction.finished_at or prediction.queued_at) + timedelta(hours=2),
                )
            )
    return exclusions


def _set_case_status(
    cases: list[Case], predictions: list[Prediction], reviewed: set[int], excluded: set[int]
) -> None:
    """Closed when every prediction of the case is reviewed, awaiting review when some wait (finished,
    neither reviewed nor marked not used), else open; with the counts of its predictions by where they
    stand, as services.cases.case_refresh_status keeps them."""
    by_case: dict[int, list[Prediction]] = defaultdict(list)
    for prediction in predictions:
        by_case[prediction.scan.case_id].append(prediction)
    unfinished = (Prediction.Status.QUEUED, Prediction.Status.RUNNING)
    for case in cases:
        mine = by_case.get(case.pk, [])
        case.predictions_awaiting_review = sum(
            p.status == Prediction.Status.DONE and p.pk not in reviewed and p.pk not in excluded for p in mine
        )
        case.predictions_in_progress = sum(p.status in unfinished for p in mine)
        case.predictions_failed = sum(p.status == Prediction.Status.FAILED for p in mine)
        if mine and all(p.pk in reviewed for p in mine):
            case.status = Case.Status.SIGNED_OFF
        elif case.predictions_awaiting_review:
            case.status = Case.Status.AWAITING_REVIEW
    counts = ["predictions_awaiting_review", "predictions_in_progress", "predictions_failed"]
    Case.objects.bulk_update(cases, ["status", *counts], batch_size=BATCH)


FIRST_NAMES = ("Ana", "Budi", "Citra", "Dewi", "Eko", "Fitri", "Gita", "Hadi", "Intan", "Joko", "Kartika")
LAST_NAMES = ("Santoso", "Wijaya", "Saputra", "Halim", "Gunawan", "Setiawan", "Kusuma", "Pratama", "Lestari")


# Routes --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One request to measure: `key` is stable across sizes and runs, `path` is the real one."""

    key: str
    path: str
    staff_only: bool = False
    plain_list: bool = False  # an API list without filters: also measured under load


def _walk(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, URLPattern]]:
    """(route, URL name with namespace, pattern) for every pattern of the URLconf, depth first."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, route, inner)
        elif pattern.name:
            yield "/" + route, f"{namespace}{pattern.name}", pattern


def _placeholder(route: str) -> str:
    return re.sub(r"<(?:\w+:)?\w+>", "<id>", route)


def page_routes(population: Population) -> list[Route]:
    """Every diagnosis page without arguments, and every one of a single patient, case (on each big case) or
    model, known by where its route starts; the measuring leaves out those that do not answer a GET."""
    records = {
        "patients": [("", population.patient_id)],
        "cases": [(f" ({size} scans)", case_id) for size, case_id in population.big_cases.items()],
        "models": [("", population.model_version_id)],
    }
    routes = []
    for route, name, pattern in _walk(get_resolver().url_patterns):
        if not name.startswith("diagnosis:"):
            continue
        converters = list(pattern.pattern.converters)
        record = re.match(r"/(\w+)/<[^>]+>/", route)
        if not converters:
            routes.append(Route(route, reverse(name)))
        elif len(converters) == 1 and record and record[1] in records:
            routes += [
                Route(f"{_placeholder(route)}{suffix}", reverse(name, kwargs={converters[0]: pk}))
                for suffix, pk in records[record[1]]
            ]
    return routes


def api_list_routes(population: Population) -> list[Route]:
    """Every ListApi of the URLconf, alone and with each value of each of its filters and each ordering both
    ways; a list under a case alone on each big case, with its filters on the biggest."""
    routes = []
    biggest = max(population.big_cases)
    for route, name, pattern in _walk(get_resolver().url_patterns):
        view_class = getattr(pattern.callback, "view_class", None)
        if not (view_class and issubclass(view_class, ListApi)):
            continue
        filters = list(_filter_values(view_class.filterset_class, population))
        if not pattern.pattern.converters:
            bases = [("", reverse(name), filters)]
        else:
            bases = [
                (f" ({size} scans)", reverse(name, args=[case_id]), filters if size == biggest else [])
                for size, case_id in population.big_cases.items()
            ]
        key = _placeholder(route)
        for suffix, path, values in bases:
            routes.append(Route(f"{key}{suffix}", path, plain_list=True))
            routes += [
                Route(f"{key}?{param}={shown}{suffix}", f"{path}?{urlencode({param: value})}")
                for param, value, shown in values
            ]
    return routes


def _filter_values(filterset_class, population: Population) -> Iterator[tuple[str, str, str]]:
    """(parameter, value, value as the route's key shows it) for each filter the list offers; a filter of a
    kind not known here is left out."""
    now = timezone.now()
    for param, list_filter in filterset_class.base_filters.items():
        if isinstance(list_filter, django_filters.OrderingFilter):
            for ordering in list_filter.param_map:
                yield param, ordering, ordering
                yield param, f"-{ordering}", f"-{ordering}"
        elif isinstance(list_filter, django_filters.DateTimeFilter):
            days = 30 if list_filter.lookup_expr == "gte" else 365
            yield param, (now - timedelta(days=days)).isoformat(), f"<{days} days ago>"
        elif isinstance(list_filter, django_filters.ChoiceFilter):
            for value, _label in list_filter.extra.get("choices", []):
                yield param, value, value
        elif isinstance(list_filter, django_filters.BooleanFilter):
            yield param, "true", "true"
        elif isinstance(list_filter, django_filters.NumberFilter):
            if "patient" in list_filter.field_name:
                yield param, str(population.patient_id), "<id>"
            elif "case" in list_filter.field_name:
                biggest = max(population.big_cases)
                yield param, str(population.big_cases[biggest]), f"<id of the {biggest}-scan case>"
        elif isinstance(list_filter, django_filters.CharFilter):
            yield param, population.search, population.search


def admin_routes() -> list[Route]:
    routes = []
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        path = reverse(name)
        routes.append(Route(path, path, staff_only=True))
    return sorted(routes, key=lambda route: route.key)


# Measuring -----------------------------------------------------------------------------------------------


def measure_page(client: Client, path: str, repeats: int) -> dict[str, float] | None:
    """Median wall time of `repeats` GETs after one to warm up, and the most queries any of them ran; None
    when the first GET does not answer 200 (a route that only takes POST, a redirect, an error)."""
    if client.get(path).status_code != 200:
        return None
    times, queries = [], 0
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            client.get(path)
            times.append((time.perf_counter() - began) * 1000)
        queries = max(queries, len(captured))
    return {"queries": queries, "ms": round(statistics.median(times), 1)}


def all_routes(population: Population) -> list[Route]:
    return page_routes(population) + api_list_routes(population) + admin_routes()


def measure_pages(
    population: Population,
    routes: list[Route],
    size: str,
    repeats: int,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Each route as the heavy clinician and as staff (the admin as staff only), keyed "<user> <route>"; a
    route that does not answer a GET with 200 is left out (and named through `say`)."""
    pages: dict[str, dict[str, dict[str, float]]] = {}
    for who, user in (("clinician", population.clinician), ("staff", population.staff)):
        client = Client(SERVER_NAME="localhost", raise_request_exception=False)
        client.force_login(user)
        for route in routes:
            if route.staff_only and who != "staff":
                continue
            figures = measure_page(client, route.path, repeats)
            if figures is None:
                say(f"{who:9} {route.key:70} left out: no 200 answer to GET")
                continue
            pages[f"{who} {route.key}"] = {size: figures}
            say(f"{who:9} {route.key:70} {figures['queries']:4} queries {figures['ms']:8.1f} ms")
    return pages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def load(base_url: str, paths: list[str], token: str, seconds: float) -> dict[str, dict[str, float]]:
    """`hey` with 16 connections on each path for `seconds`; requests/s and latency percentiles."""
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("the load test needs `hey` (apt-get install hey)")
    results = {}
    for path in paths:
        request = ["-H", f"Authorization: Token {token}", base_url + path]
        # Untimed first: every gunicorn worker's first answer on a route pays for importing and setting up
        # what the route uses, which would otherwise count against whichever list happens to come first.
        warm_up = [hey, "-n", str(WARM_UP_REQUESTS), "-c", str(LOAD_CONNECTIONS), *request]
        subprocess.run(warm_up, capture_output=True, check=True)
        command = [hey, "-z", f"{seconds}s", "-c", str(LOAD_CONNECTIONS), "-o", "csv", *request]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows = list(csv.DictReader(io.StringIO(output)))
        if not rows:
            raise SystemExit(f"hey got no answer from {base_url}{path}")
        failed = sum(row["status-code"] != "200" for row in rows)
        if failed:
            print(f"warning: {failed} of {len(rows)} answers to {path} were not 200", file=sys.stderr)
        latencies = sorted(float(row["response-time"]) * 1000 for row in rows)
        results[path] = {
            "rps": round(len(rows) / seconds, 1),
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 1),
        }
    return results


@contextmanager
def gunicorn(env: dict[str, str], workers: int = WEB_WORKERS) -> Iterator[str]:
    """gunicorn on a free loopback port with the given environment; yields its base URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "lumbar_platform.wsgi:application"]
    command += ["--bind", f"{LOOPBACK}:{port}", "--workers", str(workers), "--timeout", "120"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://{LOOPBACK}:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _answers(base_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(
                        f"gunicorn did not start:\n{log.read().decode(errors='replace')[-3000:]}"
                    )
                time.sleep(0.5)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/accounts/login/", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def measure_load(
    population: Population,
    env: dict[str, str],
    seconds: float,
    workers: int = WEB_WORKERS,
    routes: list[Route] | None = None,
) -> dict[str, dict[str, float]]:
    """The unfiltered API lists (or `routes`) under load, as the heavy clinician, against gunicorn on the
    database `env` names (the one this process uses)."""
    _token, key = AuthToken.objects.create(user=population.clinician)
    if routes is None:
        routes = [route for route in api_list_routes(population) if route.plain_list]
    with gunicorn(env, workers) as base_url:
        figures = load(base_url, [route.path for route in routes], key, seconds)
    return {route.key: figures[route.path] for route in routes}


# Running -------------------------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _table(results: dict, size: str) -> str:
    lines = [f"{'page or list (size ' + size + ')':86} {'queries':>7} {'ms':>8}"]
    for route, by_size in results["pages"].items():
        lines.append(f"{route:86} {by_size[size]['queries']:7} {by_size[size]['ms']:8.1f}")
    lines.append("")
    lines.append(f"{'API list under load (16 connections)':60} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for route, figures in results["load"].items():
        lines.append(f"{route:60} {figures['rps']:8.1f} {figures['p50_ms']:8.1f} {figures['p95_ms']:8.1f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    from django.core.management import call_command

    with ExitStack() as stack:
        create_database(ADMIN_URL, DATABASE_NAME)
        stack.callback(drop_database, ADMIN_URL, DATABASE_NAME)
        stack.callback(connection.close)
        stack.callback(shutil.rmtree, VAR_DIR, ignore_errors=True)
        _say(f"database {DATABASE_NAME}: migrating")
        call_command("migrate", verbosity=0)
        counts = counts_for(args.size)
        began = time.perf_counter()
        population = seed(counts=counts)
        _say(f"seeded {population.counts} in {time.perf_counter() - began:.0f} s")
        pages = measure_pages(population, all_routes(population), args.size, args.repeats, _say)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "lumbar_platform.settings.base"}
        results = {"pages": pages, "load": measure_load(population, env, args.load_seconds)}
    print(json.dumps(results, indent=2) if args.json else _table(results, args.size))


if __name__ == "__main__":
    main(ARGS)
