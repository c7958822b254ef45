"""Tiny training runs in the tests, executed eagerly: tracing a model's training graph takes most of such a
run (about 11 s per fit here, for a few images of 32 pixels). `manage.py train_model`'s own test trains in
graph mode, as real training does, through the same code."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def eager_execution() -> Iterator[None]:
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        with warnings.catch_warnings():
            # The input pipeline's tf.data functions stay traced (they are cheap): true, and not news.
            warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental_run_functions")
            yield
    finally:
        tf.config.run_functions_eagerly(False)
