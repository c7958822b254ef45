"""Train, cross-validate and evaluate the per-level models.

``python -m ml.train_levels {localizer,grader,cv,ensemble,evaluate,bundle,recalibrate} ...``: ``cv`` scores
one setting of the localiser or a grader by patient folds of the training split, the place to tune;
``ensemble`` joins graders (or localisers) trained with different seeds into one; ``evaluate`` is for the
final models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ml.architectures import ARCHITECTURES
from ml.errors import ArtifactError, DataError


def _localizer_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--input-size", type=int, default=128)
    command.add_argument(
        "--extra-levels", type=int, default=0, help="also find this many discs above L3-L4 (0 to 2)"
    )
    command.add_argument("--coordinates", action="store_true", help="row/column position input channels")
    command.add_argument(
        "--flip", action="store_true", help="train on mirrored slices too; ship the flip-averaged model"
    )


def _grader_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--crop-size", type=int, default=64)
    command.add_argument("--crop-scale", type=float, help="crop side in disc spacings")
    command.add_argument(
        "--class-balance",
        type=float,
        default=0.0,
        help="weight each disc by (share of its grade) ** -BALANCE (0: unweighted, 1: fully balanced)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml.train_levels", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("localizer", "grader", "cv"):
        help_text = (
            "cross-validate one setting on the training split" if name == "cv" else f"train the {name}"
        )
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--data", required=True, type=Path, help="labelled folder with yolo_labels/")
        command.add_argument("--epochs", type=int, default=40)
        command.add_argument("--batch-size", type=int, default=16)
        command.add_argument("--learning-rate", type=float, default=2e-3)
        command.add_argument("--width", type=int, default=16)
        command.add_argument("--seed", type=int, default=20240601)
        command.add_argument(
            "--shifted-copies", type=int, default=8, help="shifted copies of each training image"
        )
        if name == "cv":
            command.add_argument("--model", required=True, choices=("localizer", *ARCHITECTURES))
            command.add_argument("--folds", type=int, default=5, help="patient folds of the training split")
            command.add_argument("--json", type=Path, help="write the figures here")
            command.add_argument(
                "--members",
                type=int,
                default=1,
                help="score an ensemble of this many seeds (--seed, +1000, ...) on the same patient folds; "
                "for a grader, each seed's figures and their spread too",
            )
        else:
            command.add_argument("--out", required=True, type=Path, help="artifact folder to create")
        if name == "grader":
            command.add_argument("--arch", required=True, choices=ARCHITECTURES)
            command.add_argument(
                "--calibration-folds",
                type=int,
                default=0,
                help="fit the calibration on out-of-fold probabilities of this many patient folds first",
            )
        if name != "grader":
            _localizer_flags(command)
        if name != "localizer":
            _grader_flags(command)
    ensemble = commands.add_parser(
        "ensemble",
        help="one grader or localiser from models of one kind trained with different seeds (mean logits)",
    )
    ensemble.add_argument("--data", required=True, type=Path, help="the folder the members were trained on")
    members = ensemble.add_mutually_exclusive_group(required=True)
    members.add_argument("--grader", type=Path, action="append", help="repeat per member")
    members.add_argument("--localizer", type=Path, action="append", help="repeat per member")
    ensemble.add_argument("--out", required=True, type=Path, help="grader or localiser folder to create")
    ensemble.add_argument(
        "--gate-folds",
        type=int,
        default=0,
        help="localisers: fit the input gate out of fold, members trained again on this many patient folds",
    )
    bundle = commands.add_parser("bundle", help="one shippable artifact from a localiser and a grader")
    bundle.add_argument("--localizer", required=True, type=Path)
    bundle.add_argument("--grader", required=True, type=Path)
    bundle.add_argument("--out", required=True, type=Path, help="artifact folder to create")
    bundle.add_argument("--name", required=True, help="model name, e.g. invgg-v3")
    bundle.add_argument("--version", required=True)
    bundle.add_argument("--metrics", type=Path, help="validation figures (JSON) to store in the card")
    recalibrate = commands.add_parser(
        "recalibrate", help="fit a grader's calibration again from the out-of-fold scores its training kept"
    )
    recalibrate.add_argument("--data", required=True, type=Path, help="the folder the grader was trained on")
    recalibrate.add_argument("--grader", required=True, type=Path)
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
    from ml.levels import training

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
        if args.command == "recalibrate":
            training.recalibrate_grader(args.grader, training.load_level_data(args.data, "train"))
            return 0
        if args.command == "ensemble":
            if args.gate_folds == 1 or args.gate_folds < 0 or (args.gate_folds and args.grader):
                raise DataError("gate folds: 0 or at least 2, and only for localisers")
            train = training.load_level_data(args.data, "train")
            if args.grader:
                training.ensemble_graders(args.grader, train, args.out)
            else:
                training.ensemble_localizers(args.localizer, train, args.out, gate_folds=args.gate_folds)
            return 0
        config = _config(args)
        train = training.load_level_data(args.data, "train")
        print(f"{len(train.images)} training images ({train.skipped} without grades or three disc boxes)")
        if args.command == "localizer":
            training.train_localizer(train, config)
        elif args.command == "grader":
            training.train_grader(args.arch, train, config)
        else:
            _cross_validate(args, train, config)
    except (DataError, ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _config(args: argparse.Namespace):
    """The training settings of ``args``, after checking every number."""
    from ml.levels.training import MAX_EXTRA_LEVELS, LevelTrainConfig

    if args.epochs < 1 or args.batch_size < 1 or args.learning_rate <= 0 or args.width < 1:
        raise DataError("epochs, batch size, learning rate and width must be positive")
    if args.shifted_copies < 0:
        raise DataError("shifted copies must not be negative")
    config = LevelTrainConfig(
        output_dir=getattr(args, "out", None),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        width=args.width,
        seed=args.seed,
        shifted_copies=args.shifted_copies,
    )
    if args.command != "grader":
        if not 0 <= args.extra_levels <= MAX_EXTRA_LEVELS:
            raise DataError(f"extra levels must be 0 to {MAX_EXTRA_LEVELS}")
        config.input_size = args.input_size
        config.extra_levels = args.extra_levels
        config.coordinates = args.coordinates
        config.flip = args.flip
    if args.command != "localizer":
        if args.crop_scale is not None and args.crop_scale <= 0:
            raise DataError("crop scale must be positive")
        if args.class_balance < 0:
            raise DataError("class balance must not be negative")
        config.crop_size = args.crop_size
        config.crop_scale = args.crop_scale or config.crop_scale
        config.class_balance = args.class_balance
    if args.command == "cv" and args.members < 1:
        raise DataError("members must be at least 1")
    folds = args.folds if args.command == "cv" else args.calibration_folds if args.command == "grader" else 0
    if folds == 1 or folds < 0 or (args.command == "cv" and folds < 2):
        raise DataError("folds must be at least 2 (calibration folds: 0 or at least 2)")
    config.calibration_folds = args.calibration_folds if args.command == "grader" else 0
    return config


def _cross_validate(args: argparse.Namespace, train, config) -> None:
    from ml.levels.training import cross_validate_grader, cross_validate_localizer

    if args.model == "localizer":
        figures = cross_validate_localizer(train, config, args.folds, members=args.members)
    else:
        figures = cross_validate_grader(args.model, train, config, args.folds, members=args.members)
    settings = {key: value for key, value in vars(args).items() if key not in ("data", "json", "command")}
    result = {"settings": {**settings, "crop_scale": config.crop_scale}, "figures": figures}
    print(json.dumps(result, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
