"""Reproduce the shipped models from the repository root::

    python -m ml.train_shipped --arch invgg --name invgg-v2 --image-size 64 --width 8 --stem-stride 1 \
        --group-channels 4 --epochs 45 --patience 45
    python -m ml.train_shipped --arch vgg --name vgg-v1 --image-size 128 --width 16 --stem-stride 2 \
        --epochs 30 --patience 10

Runs from the repository root without Django; the ``train_model`` management command wraps the same
``ml.training.train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml.data import load_folder
from ml.training import TrainConfig, train

DEFAULT_DATA = Path("../shared/data/sudirman_midsag_t2")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=("vgg", "invgg"), required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--stem-stride", type=int, default=2)
    parser.add_argument("--group-channels", type=int, default=TrainConfig.group_channels)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--artifacts", type=Path, default=ARTIFACTS, help="parent folder of the artifact")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    dataset = load_folder(args.data)
    for unreadable in dataset.unreadable:
        print(f"unreadable: {unreadable.path}: {unreadable.reason}")
    config = TrainConfig(
        arch=args.arch,
        output_dir=args.artifacts / args.name,
        epochs=args.epochs,
        image_size=args.image_size,
        width=args.width,
        stem_stride=args.stem_stride,
        group_channels=args.group_channels,
        patience=args.patience,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_train_seconds=args.max_minutes * 60 if args.max_minutes else None,
        overwrite=args.overwrite,
    )
    train(config, dataset, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
