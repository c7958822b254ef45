from __future__ import annotations

from django.core.management.base import BaseCommand

from ml.management.commands._shared import (
    evaluate_artifact,
    image_table,
    levels_side_by_side,
    load_samples,
    parameters_line,
    report_unreadable,
    resolve_artifact_dir,
)


class Command(BaseCommand):
    help = "Evaluate two models side by side on the same images: image outcome and grade per level."

    def add_arguments(self, parser) -> None:
        parser.add_argument("model_a", help="A registered model name or an artifact folder.")
        parser.add_argument("model_b", help="A registered model name or an artifact folder.")
        parser.add_argument("--data", required=True, help="Labelled folder with normal/ and ddd/.")
        parser.add_argument("--split", help="Only the rows of labels.csv in this split (e.g. val).")

    def handle(self, *args, model_a: str, model_b: str, data: str, split: str | None, **options):
        artifact_dirs = [resolve_artifact_dir(model_a), resolve_artifact_dir(model_b)]
        dataset, samples = load_samples(data, split)
        report_unreadable(self.stdout, dataset.unreadable)
        columns, analysers = {}, []
        for artifact_dir in artifact_dirs:
            analyser, metrics = evaluate_artifact(artifact_dir, dataset, samples, self.stdout)
            name = analyser.card.name
            columns[name if name not in columns else f"{name} (B)"] = metrics
            analysers.append(analyser)
        self.stdout.write(f"{len(samples)} images from {data}{f' (split {split})' if split else ''}:")
        self.stdout.write(image_table(columns))
        self.stdout.write("Grades per level:")
        self.stdout.write(levels_side_by_side(columns))
        for analyser in analysers:
            self.stdout.write(parameters_line(analyser))
