"""Train and evaluate the per-level models: ``python -m ml.train_levels {localizer,grader,evaluate} ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ml.architectures import ARCHITECTURES
from ml.errors import ArtifactError, DataError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.train_levels", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("localizer", "grader"):
        command = commands.add_parser(name, help=f"train the disc {name}")
        command.add_argument("--data", required=True, type=Path, help="labelled folder with yolo_labels/")
        command.add_argument("--out", required=True, type=Path, help="artifact folder to create")
        command.add_argument("--epochs", type=int, default=40)
        command.add_argument("--batch-size", type=int, default=16)
        command.add_argument("--learning-rate", type=float, default=2e-3)
        command.add_argument("--width", type=int, default=16)
        command.add_argument("--seed", type=int, default=20240601)
        if name == "grader":
            command.add_argument("--arch", required=True, choices=ARCHITECTURES)
            command.add_argument("--crop-size", type=int, default=64)
            command.add_argument("--crop-scale", type=float, help="crop side in disc spacings")
            command.add_argument(
                "--shifted-copies", type=int, default=8, help="shifted copies of each training image"
            )
            command.add_argument(
                "--calibration-folds",
                type=int,
                default=0,
                help="fit the calibration on out-of-fold probabilities of this many patient folds first",
            )
        else:
            command.add_argument("--input-size", type=int, default=128)
    bundle = commands.add_parser("bundle", help="one shippable artifact from a localiser and a grader")
    bundle.add_argument("--localizer", required=True, type=Path)
    bundle.add_argument("--grader", required=True, type=Path)
    bundle.add_argument("--out", required=True, type=Path, help="artifact folder to create")
    bundle.add_argument("--name", required=True, help="model name, e.g. invgg-v3")
    bundle.add_argument("--version", required=True)
    bundle.add_argument("--metrics", type=Path, help="validation figures (JSON) to store in the card")
    evaluate = commands.add_parser("evaluate", help="validation figures, plain and shifted; fits calibration")
    evaluate.add_argument("--data", required=True, type=Path)
    evaluate.add_argument("--localizer", required=True, type=Path)
    evaluate.add_argument("--grader", required=True, type=Path, action="append", help="repeat to compare")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--shift-seed", type=int, default=7)
    evaluate.add_argument("--json", type=Path, help="write the figures here")
    evaluate.add_argument(
        "--store-calibration",
        action="store_true",
        help="write the calibration fitted on this split into each grader's card (replaces the stored one)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ml.levels.training import LevelTrainConfig, load_level_data, train_grader, train_localizer

    try:
        if args.command == "bundle":
            from ml.card import assemble_artifact

            extra = {"validation_metrics": json.loads(args.metrics.read_text())} if args.metrics else None
            card = assemble_artifact(
                localizer_dir=args.localizer,
                grader_dir=args.grader,
                output_dir=args.out,
                name=args.name,
                version=args.version,
                extra=extra,
            )
            print(f"{card.name}: {card.parameters:,} parameters, written to {args.out}")
            return 0
        if args.command == "evaluate":
            from ml.levels.report import evaluate_levels

            evaluate_levels(args)
            return 0
        if args.epochs < 1 or args.batch_size < 1 or args.learning_rate <= 0 or args.width < 1:
            raise DataError("epochs, batch size, learning rate and width must be positive")
        if args.command == "grader" and (
            (args.crop_scale is not None and args.crop_scale <= 0)
            or args.shifted_copies < 0
            or args.calibration_folds == 1
            or args.calibration_folds < 0
        ):
            raise DataError(
                "crop scale must be positive, shifted copies not negative, calibration folds 0 or at least 2"
            )
        config = LevelTrainConfig(
            output_dir=args.out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            width=args.width,
            seed=args.seed,
        )
        train = load_level_data(args.data, "train")
        print(f"{len(train.images)} training images ({train.skipped} without grades or three disc boxes)")
        if args.command == "localizer":
            config.input_size = args.input_size
            train_localizer(train, config)
        else:
            config.crop_size = args.crop_size
            config.crop_scale = args.crop_scale or config.crop_scale
            config.shifted_copies = args.shifted_copies
            config.calibration_folds = args.calibration_folds
            train_grader(args.arch, train, config)
    except (DataError, ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
