from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml.card import ARCHITECTURES, CARD_FILE, LOCALIZER_FILE, TRAINED_MODEL_FILE, ModelCard
from ml.errors import MLError
from ml.management.commands._shared import (
    evaluate_artifact,
    image_table,
    level_table,
    resolve_artifact_dir,
)
from ml.models import ModelVersion
from ml.registry import RegistryError, model_version_register

POSITIVE = ("epochs", "localizer_epochs", "batch_size", "width", "localizer_width")


class Command(BaseCommand):
    help = (
        "Train a per-level model on a labelled folder (normal/, ddd/, labels.csv with patient_id, split and "
        "Pfirrmann grades, yolo_labels/ with disc boxes): a disc localiser (or --localizer to reuse one), a "
        "VGG or INVGG grader with out-of-fold calibration, one artifact folder, registered as a ModelVersion."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--arch", required=True, choices=ARCHITECTURES, help="Grader architecture.")
        parser.add_argument("--data", required=True, help="Labelled folder with normal/, ddd/, yolo_labels/.")
        parser.add_argument(
            "--localizer",
            help="Reuse this localiser: a folder written by `python -m ml.train_levels localizer`, or a "
            "model artifact folder or registered model name whose localiser is taken.",
        )
        parser.add_argument("--epochs", type=int, default=40, help="Grader epochs.")
        parser.add_argument("--localizer-epochs", type=int, default=40)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--width", type=int, default=16, help="Channels of the grader's first block.")
        parser.add_argument("--localizer-width", type=int, default=16)
        parser.add_argument(
            "--input-size", type=int, default=128, help="Localiser input in pixels (a multiple of 32)."
        )
        parser.add_argument("--crop-size", type=int, default=64, help="Grader crop in pixels.")
        parser.add_argument(
            "--calibration-folds",
            type=int,
            default=5,
            help="Patient folds whose out-of-fold probabilities fit the calibration (at least 2).",
        )
        parser.add_argument(
            "--shifted-copies", type=int, default=8, help="Scanner-shifted copies of each training image."
        )
        parser.add_argument("--seed", type=int, default=20240601)
        parser.add_argument("--name", help="Model name (default: the output folder's name).")
        parser.add_argument("--model-version", default="1", help="Version recorded in the card.")
        parser.add_argument(
            "--output", help="Artifact folder to create (default: var/artifacts/<arch>-<time>)."
        )
        parser.add_argument("--activate", action="store_true", help="Make it the active model.")

    def handle(self, *args, **options) -> None:
        _check_numbers(options)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        output = Path(options["output"] or settings.VAR_DIR / "artifacts" / f"{options['arch']}-{stamp}")
        if output.exists():
            raise CommandError(f"The output folder already exists: {output}. Choose a new --output.")
        name = options["name"] or output.name
        if ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"A model named {name!r} is already registered. Choose another --name.")
        reused = _localizer_source(options["localizer"]) if options["localizer"] else None

        started = time.monotonic()
        output.parent.mkdir(parents=True, exist_ok=True)
        # Localiser and grader are trained next to the output and removed with their folder at the end; only
        # the assembled artifact stays, and only once it is complete.
        with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as work:
            work = Path(work)
            try:
                metrics = self._train(options, reused, work, output, name)
            except (MLError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
        try:
            model_version = model_version_register(artifact_dir=output, activate=options["activate"])
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        if metrics:
            self.stdout.write(f"Validation split, {metrics['n']} images:")
            self.stdout.write(image_table({model_version.name: metrics}))
            self.stdout.write(level_table(metrics))
        self.stdout.write(
            self.style.SUCCESS(
                f"Trained {model_version.name} in {time.monotonic() - started:.0f} s: {output}; registered"
                f"{' and activated' if model_version.is_active else ''}."
            )
        )

    def _train(
        self, options: dict, reused: tuple[Path, ModelCard | None] | None, work: Path, output: Path, name: str
    ) -> dict:
        """Train what is needed, evaluate on the validation split, write the artifact; the figures."""
        from ml.card import assemble_artifact
        from ml.data import load_folder
        from ml.levels.training import LevelTrainConfig, load_level_data, train_grader, train_localizer

        log = self.stdout.write
        train = load_level_data(options["data"], "train")
        log(f"{len(train.images)} training images ({train.skipped} without grades or three disc boxes)")
        patients = len({sample.patient_id for sample in train.samples})
        if patients < options["calibration_folds"]:
            raise CommandError(
                f"--calibration-folds {options['calibration_folds']} needs as many training patients; "
                f"the training split has {patients}."
            )
        common = {"batch_size": options["batch_size"], "seed": options["seed"]}
        if reused is None:
            localizer = work / "localizer"
            config = LevelTrainConfig(
                output_dir=localizer,
                epochs=options["localizer_epochs"],
                width=options["localizer_width"],
                input_size=options["input_size"],
                **common,
            )
            train_localizer(train, config, log=log)
        else:
            localizer, card = reused
            if card is not None:
                localizer = _stage_localizer(localizer, card, work / "localizer")
            log(f"Reusing the localiser of {options['localizer']}")
        config = LevelTrainConfig(
            output_dir=work / "grader",
            epochs=options["epochs"],
            width=options["width"],
            crop_size=options["crop_size"],
            shifted_copies=options["shifted_copies"],
            calibration_folds=options["calibration_folds"],
            **common,
        )
        train_grader(options["arch"], train, config, log=log)
        parts = {
            "localizer_dir": localizer,
            "grader_dir": work / "grader",
            "name": name,
            "version": options["model_version"],
        }
        dataset = load_folder(options["data"], verify_images=False)
        if "val" not in dataset.split_names:
            log("No validation split: the card records no validation figures.")
            assemble_artifact(output_dir=output, **parts)
            return {}
        # Evaluated as it will ship, then written again with its validation figures in the card.
        assemble_artifact(output_dir=work / "artifact", **parts)
        _, metrics = evaluate_artifact(work / "artifact", dataset, dataset.val, self.stdout)
        assemble_artifact(
            output_dir=output, **parts, extra={"validation_metrics": {"split": "val", **metrics}}
        )
        return metrics


def _check_numbers(options: dict) -> None:
    for key in POSITIVE:
        if options[key] < 1:
            raise CommandError(f"--{key.replace('_', '-')} must be a positive number.")
    if options["input_size"] < 32 or options["input_size"] % 32:
        raise CommandError("--input-size must be a positive multiple of 32 pixels.")
    if options["crop_size"] < 16:
        raise CommandError("--crop-size must be at least 16 pixels.")
    if options["calibration_folds"] < 2:
        raise CommandError("--calibration-folds must be at least 2: the calibration is fitted out of fold.")
    if options["shifted_copies"] < 0:
        raise CommandError("--shifted-copies must not be negative.")


def _localizer_source(given: str) -> tuple[Path, ModelCard | None]:
    """What ``--localizer`` names, checked before any training: a trained localiser folder (``model.keras``
    and a ``disc_localizer`` card), or else a model artifact and its card, whose localiser is reused."""
    folder = Path(given)
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        card = None
    if isinstance(card, dict) and card.get("kind") == "disc_localizer":
        if not (folder / TRAINED_MODEL_FILE).is_file():
            raise CommandError(f"The localiser folder {folder} has no {TRAINED_MODEL_FILE}.")
        return folder, None
    artifact_dir = resolve_artifact_dir(given)
    try:
        return artifact_dir, ModelCard.read(artifact_dir)
    except MLError as exc:
        raise CommandError(f"--localizer: {exc}") from exc


def _stage_localizer(artifact_dir: Path, card: ModelCard, folder: Path) -> Path:
    """The localiser of a model artifact laid out as training writes it (``model.keras`` and its card)."""
    folder.mkdir()
    shutil.copyfile(artifact_dir / LOCALIZER_FILE, folder / TRAINED_MODEL_FILE)
    section = card.to_dict()["localizer"]
    training = (card.facts.get("training") or {}).get("localizer")
    (folder / CARD_FILE).write_text(json.dumps({**section, "kind": "disc_localizer", "training": training}))
    return folder
