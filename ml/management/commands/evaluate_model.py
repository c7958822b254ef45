from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.errors import MLError
from ml.management.commands._shared import (
    load_classifier_from,
    load_samples,
    metrics_table,
    report_unreadable,
    resolve_artifact_dir,
)


class Command(BaseCommand):
    help = (
        "Evaluate a model on a labelled folder (normal/, ddd/, optional labels.csv) at its stored threshold."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", required=True, help="A registered model name or an artifact folder.")
        parser.add_argument("--data", required=True, help="Labelled folder with normal/ and ddd/.")
        parser.add_argument("--split", help="Only the rows of labels.csv in this split (e.g. val).")
        parser.add_argument("--json", dest="json_path", help="Write the metrics to this JSON file.")

    def handle(self, *args, model: str, data: str, split: str | None, json_path: str | None, **options):
        from ml.evaluation import evaluate

        artifact_dir = resolve_artifact_dir(model)
        dataset, samples = load_samples(data, split)
        report_unreadable(self.stdout, dataset.unreadable)
        classifier = load_classifier_from(artifact_dir)
        try:
            result = evaluate(classifier, samples)
        except MLError as exc:
            raise CommandError(str(exc)) from exc
        report_unreadable(self.stdout, result.unreadable)
        metrics = result.report.to_dict()
        metrics["unreadable"] = len(dataset.unreadable) + len(result.unreadable)
        self.stdout.write(f"{classifier.name} on {data}{f' (split {split})' if split else ''}:")
        self.stdout.write(metrics_table({classifier.name: metrics}))
        if json_path:
            Path(json_path).write_text(json.dumps(metrics, indent=2) + "\n")
            self.stdout.write(f"Metrics written to {json_path}")
