"""Benchmark ml.involution.Involution against the keras-io formulation of the same layer.

The reference is the keras-io involution example: ``extract_patches`` builds a (B, H, W, K*K*C) tensor,
multiplied by the per-pixel kernel and summed over the K*K axis. Ours unfolds the window with a depthwise
convolution of one-hot filters instead. Both share the kernel-generation weights, so outputs must agree to
float tolerance.

Setup: batch 16, 32 channels, 4 groups, K=3, stride 1, float32, on the CPU. Time: forward + backward
(gradients w.r.t. input and weights) in a plain ``tf.function`` graph, as ``ml.levels.training`` trains
INVGG; median of --repeats runs after two warm-ups. ``--jit`` compiles both with XLA instead (Keras'
default, ``jit_compile="auto"``, which training keeps for the VGG models).
Memory: TensorFlow reports no allocator statistics on the CPU, so each variant and size runs in a fresh
subprocess that builds the layer and input, then runs one compiled forward+backward step and reports
peak RSS (``VmHWM`` in /proc/self/status) minus RSS before that step, in MB. It includes XLA compilation
(tens of MB for either variant); later steps reuse the allocator's cached memory, so measuring after a
warm-up would hide the difference.

    python bench/involution.py [--sizes 64 128 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCH, CHANNELS, GROUPS, KERNEL, STRIDE = 16, 32, 4, 3, 1
SETUP = f"batch {BATCH}, {CHANNELS} channels, {GROUPS} groups, K={KERNEL}, stride {STRIDE}, float32, CPU"


def _layers():
    import keras
    from keras import ops

    from ml.involution import Involution

    class PatchInvolution(Involution):
        """keras-io formulation: all K*K patches at once."""

        def call(self, inputs, training=None):
            k, g = self.kernel_size, self.groups
            kernel = self._kernel(inputs, training=training)
            batch, out_h, out_w = ops.shape(kernel)[0], ops.shape(kernel)[1], ops.shape(kernel)[2]
            # (B, H', W', K*K*G) -> (B, H', W', K*K, G, 1)
            kernel = ops.reshape(kernel, (batch, out_h, out_w, k * k, g, 1))
            # (B, H, W, C) -> (B, H', W', K*K*C)
            patches = ops.image.extract_patches(
                inputs, (k, k), strides=(self.stride, self.stride), padding="same"
            )
            # (B, H', W', K*K*C) -> (B, H', W', K*K, G, C/G)
            patches = ops.reshape(patches, (batch, out_h, out_w, k * k, g, self.channels // g))
            # (B, H', W', K*K, G, C/G) -> (B, H', W', G, C/G)
            output = ops.sum(kernel * patches, axis=3)
            # (B, H', W', G, C/G) -> (B, H', W', C)
            return ops.reshape(output, (batch, out_h, out_w, self.channels))

    keras.utils.set_random_seed(0)
    # the plain formulation with random weights, so the comparison exercises every offset
    ours = Involution(KERNEL, STRIDE, GROUPS, residual_kernel=False)
    reference = PatchInvolution(KERNEL, STRIDE, GROUPS, residual_kernel=False)
    return ours, reference


JIT = "--jit" in sys.argv


def _step_function(layer):
    import tensorflow as tf

    @tf.function(jit_compile=JIT)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return y, tape.gradient(loss, [x, *layer.trainable_variables])

    return step


def _inputs(size: int):
    import numpy as np

    return np.random.default_rng(1).standard_normal((BATCH, size, size, CHANNELS)).astype("float32")


def compare(size: int, repeats: int) -> dict:
    import numpy as np

    ours, reference = _layers()
    x = _inputs(size)
    ours(x)
    reference(x)
    reference.set_weights(ours.get_weights())
    results = {}
    for label, layer in (("ours", ours), ("reference", reference)):
        step = _step_function(layer)
        output, _ = step(x)
        step(x)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            output, grads = step(x)
            _ = [g.numpy() for g in grads]
            times.append((time.perf_counter() - started) * 1000)
        results[label] = (np.asarray(output), float(np.median(times)))
    return {
        "max_abs_diff": float(np.abs(results["ours"][0] - results["reference"][0]).max()),
        "ours_ms": round(results["ours"][1], 1),
        "reference_ms": round(results["reference"][1], 1),
    }


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(variant: str, size: int) -> float:
    """Run in a fresh process: peak resident MB added by the first compiled forward+backward step."""
    ours, reference = _layers()
    layer = ours if variant == "ours" else reference
    x = _inputs(size)
    layer(x[:1, :8, :8])
    step = _step_function(layer)
    before = _rss_kb("VmRSS")
    output, grads = step(x)
    _ = [g.numpy() for g in grads]
    return (_rss_kb("VmHWM") - before) / 1024.0


def _memory_in_subprocess(variant: str, size: int) -> float:
    completed = subprocess.run(
        [sys.executable, __file__, "--memory-child", variant, str(size), *(["--jit"] if JIT else [])],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by size")
    parser.add_argument(
        "--jit", action="store_true", help="XLA graphs instead of plain ones (INVGG trains without XLA)"
    )
    parser.add_argument("--memory-child", nargs=2, metavar=("VARIANT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(measure_memory(args.memory_child[0], int(args.memory_child[1])))
        return

    results = {}
    for size in args.sizes:
        row = compare(size, args.repeats)
        row["ours_peak_mb"] = round(_memory_in_subprocess("ours", size), 1)
        row["reference_peak_mb"] = round(_memory_in_subprocess("reference", size), 1)
        results[str(size)] = row
        if not args.json:
            print(
                f"{size:>4}px  max|diff| {row['max_abs_diff']:.2e}  "
                f"time ours {row['ours_ms']:.1f} ms vs reference {row['reference_ms']:.1f} ms "
                f"({row['reference_ms'] / row['ours_ms']:.1f}x)  "
                f"peak extra RSS ours {row['ours_peak_mb']:.0f} MB "
                f"vs reference {row['reference_peak_mb']:.0f} MB",
                flush=True,
            )
    if args.json:
        print(json.dumps({"setup": SETUP, "xla": JIT, **results}))
    else:
        mode = "XLA" if JIT else "no XLA"
        print(f"setup: {SETUP}, {mode}; time = median forward+backward; memory = peak RSS growth, first step")


if __name__ == "__main__":
    main()
