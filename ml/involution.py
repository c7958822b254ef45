"""Involution layer (Li et al., CVPR 2021) in the Keras 3 API.

Unlike a convolution, the kernel is generated per pixel from that pixel's own features and shared across
the channels of a group. The kernel is applied to the K*K window around each output pixel, unfolded by a
depthwise convolution with one fixed one-hot filter per offset: a (B, H', W', K*K*C) patch tensor, K*K
times the input. On this CPU a grader training step without XLA takes about half the time of accumulating
K*K shifted slices at 16 crops per batch, and about 10% less at the 48 crops the graders train on (medians
of runs that vary up to twofold on this shared machine). Accumulating slices kept memory at the input's
size; the graders apply the layer to 64-pixel crops, where the largest patch tensor is about 113 MB at the
training batch of 48 crops (16 channels at 64 x 64, 9 taps, float32) and 7 MB for one scan's three crops.

Padding follows TensorFlow's "SAME" convention for every input size, so the output equals that of
implementations built on ``extract_patches(..., padding="same")`` (see ``bench/involution.py``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="lumbar")
class Involution(layers.Layer):
    """Per-pixel, channel-group-shared KxK kernel; output spatial size is ``ceil(input / stride)``.

    ``residual_kernel`` (default) generates the kernel as identity + tanh(generated), with the generation
    weights starting at zero. A plain involution multiplies its input by a kernel computed from that input,
    so a flat stack of n layers is a degree-2^n polynomial of the image: with random initialisation a
    13-layer stack is chaotic, and any mismatch between batch and moving BatchNorm statistics is squared
    at every layer until inference overflows to NaN. The bounded residual kernel keeps every layer
    linear-bounded in its input and starts as the identity, so the flat INVGG trains like the shallow
    network it begins as. ``residual_kernel=False`` gives the plain formulation of the paper.
    """

    def __init__(
        self,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        reduction_ratio: int = 4,
        norm_momentum: float = 0.99,
        residual_kernel: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size < 1 or stride < 1 or groups < 1 or reduction_ratio < 1:
            raise ValueError("kernel_size, stride, groups and reduction_ratio must be positive integers")
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.groups = int(groups)
        self.reduction_ratio = int(reduction_ratio)
        self.norm_momentum = float(norm_momentum)
        self.residual_kernel = bool(residual_kernel)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("Involution needs a known channel count")
        if channels % self.groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({self.groups})")
        self.channels = int(channels)
        reduced = max(self.channels // self.reduction_ratio, 1)
        self.reduce = layers.Conv2D(reduced, 1, use_bias=False, name="reduce")
        self.reduce_norm = layers.BatchNormalization(momentum=self.norm_momentum, name="reduce_norm")
        self.span = layers.Conv2D(
            self.kernel_size * self.kernel_size * self.groups,
            1,
            kernel_initializer="zeros" if self.residual_kernel else "glorot_uniform",
            name="span",
        )
        pooled_shape = (input_shape[0], None, None, self.channels)
        self.reduce.build(pooled_shape)
        self.reduce_norm.build((input_shape[0], None, None, reduced))
        self.span.build((input_shape[0], None, None, reduced))

    def _kernel(self, inputs, training=None):
        if self.stride > 1:
            # (B, H, W, C) -> (B, H/s, W/s, C)
            inputs = ops.average_pool(inputs, self.stride, self.stride, padding="same")
        # (B, H', W', C) -> (B, H', W', C/r)
        reduced = self.reduce(inputs)
        # (B, H', W', C/r)
        reduced = ops.relu(self.reduce_norm(reduced, training=training))
        # (B, H', W', C/r) -> (B, H', W', K*K*G)
        kernel = self.span(reduced)
        if self.residual_kernel:
            # (B, H', W', K*K*G): identity (centre tap 1 in every group) + bounded learned part
            kernel = ops.tanh(kernel) + self._identity_kernel()
        return kernel

    def _identity_kernel(self):
        k, g = self.kernel_size, self.groups
        centre = (k // 2) * k + k // 2
        # (K*K*G,), laid out offset-major like the generated kernel
        return ops.convert_to_tensor(
            [1.0 if i // g == centre else 0.0 for i in range(k * k * g)], dtype=self.compute_dtype
        )

    def call(self, inputs, training=None):
        k, s, g = self.kernel_size, self.stride, self.groups
        # (B, H, W, C) -> (B, H', W', K*K*G), laid out offset-major: tap t of group j is t * G + j
        kernel = self._kernel(inputs, training=training)
        batch, out_h, out_w = ops.shape(kernel)[0], ops.shape(kernel)[1], ops.shape(kernel)[2]
        # (B, H, W, C) -> (B, H', W', C*K*K): the pixel under tap t of channel c at c * K*K + t. A depthwise
        # convolution with a fixed one-hot filter per tap unfolds the window with TensorFlow "SAME" padding.
        patches = ops.depthwise_conv(inputs, self._unfold_filter(), strides=s, padding="same")
        # (B, H', W', C*K*K) -> (B, H', W', G, C/G, K*K)
        patches = ops.reshape(patches, (batch, out_h, out_w, g, self.channels // g, k * k))
        # (B, H', W', K*K*G) -> (B, H', W', G, 1, K*K)
        kernel = ops.transpose(ops.reshape(kernel, (batch, out_h, out_w, k * k, g)), (0, 1, 2, 4, 3))
        kernel = ops.expand_dims(kernel, 4)
        # (B, H', W', G, C/G, K*K) -> (B, H', W', G, C/G) -> (B, H', W', C)
        output = ops.sum(patches * kernel, axis=-1)
        return ops.reshape(output, (batch, out_h, out_w, self.channels))

    def _unfold_filter(self):
        k, taps = self.kernel_size, self.kernel_size * self.kernel_size
        # (K, K, C, K*K): output t of every channel copies the pixel at offset (t // K, t % K)
        one_hot = np.zeros((k, k, self.channels, taps), dtype="float32")
        for tap in range(taps):
            one_hot[tap // k, tap % k, :, tap] = 1.0
        return ops.convert_to_tensor(one_hot, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        def scaled(size):
            return None if size is None else -(-size // self.stride)

        return (input_shape[0], scaled(input_shape[1]), scaled(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "stride": self.stride,
                "groups": self.groups,
                "reduction_ratio": self.reduction_ratio,
                "norm_momentum": self.norm_momentum,
                "residual_kernel": self.residual_kernel,
            }
        )
        return config
