from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from ml.management.commands._shared import (
    evaluate_artifact,
    image_table,
    level_table,
    load_samples,
    parameters_line,
    report_unreadable,
    resolve_artifact_dir,
)


class Command(BaseCommand):
    help = (
        "Evaluate a model on a labelled folder (normal/, ddd/, optional labels.csv with Pfirrmann grades and "
        "yolo_labels/ with disc boxes): image outcome, grade per level, disc localisation and calibration."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", required=True, help="A registered model name or an artifact folder.")
        parser.add_argument("--data", required=True, help="Labelled folder with normal/ and ddd/.")
        parser.add_argument("--split", help="Only the rows of labels.csv in this split (e.g. val).")
        parser.add_argument("--json", dest="json_path", help="Write the metrics to this JSON file.")

    def handle(self, *args, model: str, data: str, split: str | None, json_path: str | None, **options):
        artifact_dir = resolve_artifact_dir(model)
        dataset, samples = load_samples(data, split)
        report_unreadable(self.stdout, dataset.unreadable)
        analyser, metrics = evaluate_artifact(artifact_dir, dataset, samples, self.stdout)
        name = analyser.card.name
        self.stdout.write(f"{name} on {len(samples)} images of {data}{f' (split {split})' if split else ''}:")
        self.stdout.write(image_table({name: metrics}))
        self.stdout.write("Grades per level:")
        self.stdout.write(level_table(metrics))
        self.stdout.write(parameters_line(analyser))
        if json_path:
            Path(json_path).write_text(json.dumps(metrics, indent=2) + "\n")
            self.stdout.write(f"Metrics written to {json_path}")
