from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml.errors import MLError
from ml.management.commands._shared import metrics_table, report_unreadable
from ml.registry import model_version_register

ARCHITECTURES = ("vgg", "invgg")


class Command(BaseCommand):
    help = (
        "Train a VGG or INVGG classifier on a labelled folder (normal/, ddd/, optional labels.csv with "
        "patient_id and split), write its artifact folder and register it as a ModelVersion."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--arch", required=True, choices=ARCHITECTURES)
        parser.add_argument("--data", required=True, help="Labelled folder with normal/ and ddd/.")
        parser.add_argument("--epochs", type=int, default=40)
        parser.add_argument("--image-size", type=int, default=160, help="Model input size in pixels.")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--width", type=int, default=16, help="Channels of the first block.")
        parser.add_argument("--stem-stride", type=int, default=2, help="Stride of the first convolution.")
        parser.add_argument(
            "--group-channels", type=int, default=8, help="INVGG: channels sharing one generated kernel."
        )
        parser.add_argument("--seed", type=int, default=20240601)
        parser.add_argument(
            "--output", help="Artifact folder to create (default: var/artifacts/<arch>-<time>)."
        )
        parser.add_argument("--activate", action="store_true", help="Make it the active model.")

    def handle(self, *args, **options) -> None:
        from ml.data import load_folder
        from ml.training import TrainConfig, train

        for name in ("epochs", "image_size", "batch_size", "width", "stem_stride", "group_channels"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be a positive number.")
        if options["image_size"] < 32:
            raise CommandError("--image-size must be at least 32 pixels.")
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        output = Path(options["output"] or settings.VAR_DIR / "artifacts" / f"{options['arch']}-{stamp}")
        try:
            dataset = load_folder(options["data"], seed=options["seed"])
        except MLError as exc:
            raise CommandError(str(exc)) from exc
        report_unreadable(self.stdout, dataset.unreadable)
        config = TrainConfig(
            arch=options["arch"],
            output_dir=output,
            epochs=options["epochs"],
            image_size=options["image_size"],
            batch_size=options["batch_size"],
            width=options["width"],
            stem_stride=options["stem_stride"],
            group_channels=options["group_channels"],
            seed=options["seed"],
        )
        try:
            result = train(config, dataset, log=lambda line: self.stdout.write(line))
        except MLError as exc:
            raise CommandError(str(exc)) from exc
        model_version = model_version_register(artifact_dir=result.artifact_dir, activate=options["activate"])
        self.stdout.write(metrics_table({model_version.name: result.metrics}))
        self.stdout.write(
            self.style.SUCCESS(
                f"Trained {model_version.name} in {result.seconds:.0f} s: {result.artifact_dir}; registered"
                f"{' and activated' if model_version.is_active else ''}."
            )
        )
