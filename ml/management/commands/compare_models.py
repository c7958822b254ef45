from __future__ import annotations

from django.core.management.base import BaseCommand

from ml.management.commands._shared import (
    evaluate_artifact,
    load_samples,
    metrics_table,
    report_unreadable,
    resolve_artifact_dir,
)


class Command(BaseCommand):
    help = "Evaluate two models side by side on the same images."

    def add_arguments(self, parser) -> None:
        parser.add_argument("model_a", help="A registered model name or an artifact folder.")
        parser.add_argument("model_b", help="A registered model name or an artifact folder.")
        parser.add_argument("--data", required=True, help="Labelled folder with normal/ and ddd/.")
        parser.add_argument("--split", help="Only the rows of labels.csv in this split (e.g. val).")

    def handle(self, *args, model_a: str, model_b: str, data: str, split: str | None, **options):
        artifact_dirs = [resolve_artifact_dir(model_a), resolve_artifact_dir(model_b)]
        dataset, samples = load_samples(data, split)
        report_unreadable(self.stdout, dataset.unreadable)
        columns = {}
        for artifact_dir in artifact_dirs:
            classifier, result = evaluate_artifact(artifact_dir, samples, self.stdout)
            name = (
                classifier.name if classifier.name not in columns else f"{classifier.name} ({artifact_dir})"
            )
            columns[name] = {**result.report.to_dict(), "parameters": classifier.card.get("parameters")}
        self.stdout.write(f"{len(samples)} images from {data}{f' (split {split})' if split else ''}:")
        self.stdout.write(metrics_table(columns))
        self.stdout.write(
            "Parameters: " + ", ".join(f"{name}: {column['parameters']}" for name, column in columns.items())
        )
