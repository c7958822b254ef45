from __future__ import annotations

import keras
import numpy as np
import pytest

from ml.involution import Involution


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, out


def _numpy_involution(layer: Involution, x: np.ndarray) -> np.ndarray:
    """Plain loops: TF-"same" average pool, 1x1 reduce, BatchNorm (inference), ReLU, 1x1 span, apply."""
    k, s, g = layer.kernel_size, layer.stride, layer.groups
    batch, height, width, channels = x.shape
    top, out_h = _same_padding(height, s, s)
    left, out_w = _same_padding(width, s, s)
    pooled = np.zeros((batch, out_h, out_w, channels))
    for i in range(out_h):
        for j in range(out_w):
            y0, x0 = i * s - top, j * s - left
            window = x[:, max(y0, 0) : y0 + s, max(x0, 0) : x0 + s]
            pooled[:, i, j] = window.mean(axis=(1, 2))
    reduce_w = layer.reduce.kernel.numpy()[0, 0]
    gamma, beta, mean, var = (v.numpy() for v in layer.reduce_norm.weights)
    span_w, span_b = layer.span.kernel.numpy()[0, 0], layer.span.bias.numpy()
    reduced = pooled @ reduce_w
    reduced = np.maximum(gamma * (reduced - mean) / np.sqrt(var + layer.reduce_norm.epsilon) + beta, 0)
    kernel = (reduced @ span_w + span_b).reshape(batch, out_h, out_w, k * k, g)
    if layer.residual_kernel:
        kernel = np.tanh(kernel)
        kernel[:, :, :, (k // 2) * k + k // 2] += 1.0

    pad_top, _ = _same_padding(height, k, s)
    pad_left, _ = _same_padding(width, k, s)
    out = np.zeros((batch, out_h, out_w, channels))
    per_group = channels // g
    for i in range(out_h):
        for j in range(out_w):
            for dy in range(k):
                for dx in range(k):
                    yy, xx = i * s - pad_top + dy, j * s - pad_left + dx
                    if not (0 <= yy < height and 0 <= xx < width):
                        continue
                    weight = np.repeat(kernel[:, i, j, dy * k + dx], per_group, axis=-1)
                    out[:, i, j] += weight * x[:, yy, xx]
    return out


@pytest.mark.parametrize(
    ("kernel_size", "stride", "groups", "shape"),
    [(3, 1, 1, (2, 6, 7, 4)), (3, 1, 4, (2, 5, 5, 8)), (3, 2, 2, (2, 8, 8, 4)), (5, 2, 2, (1, 7, 9, 4))],
)
def test_involution_matches_numpy_reference(kernel_size, stride, groups, shape):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    layer = Involution(kernel_size, stride, groups, reduction_ratio=2, residual_kernel=False)
    x = rng.standard_normal(shape).astype("float32")
    layer(x)
    norm = layer.reduce_norm
    norm.moving_mean.assign(rng.standard_normal(norm.moving_mean.shape).astype("float32") * 0.1)
    norm.moving_variance.assign(rng.uniform(0.5, 2.0, norm.moving_variance.shape).astype("float32"))

    result = keras.ops.convert_to_numpy(layer(x, training=False))

    expected = _numpy_involution(layer, x)
    assert result.shape == (shape[0], -(-shape[1] // stride), -(-shape[2] // stride), shape[3])
    np.testing.assert_allclose(result, expected, atol=1e-4)


def test_residual_kernel_starts_as_the_identity_and_matches_numpy():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    layer = Involution(3, 1, 2, reduction_ratio=2)
    x = rng.standard_normal((2, 6, 5, 8)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), x, atol=1e-6)

    layer.span.kernel.assign(rng.standard_normal(layer.span.kernel.shape).astype("float32"))
    layer.span.bias.assign(rng.standard_normal(layer.span.bias.shape).astype("float32"))

    expected = _numpy_involution(layer, x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), expected, atol=1e-4)


def test_plain_kernel_is_not_the_identity():
    x = np.random.default_rng(2).standard_normal((2, 6, 6, 8)).astype("float32")

    assert np.abs(keras.ops.convert_to_numpy(Involution(3, 1, 2, residual_kernel=False)(x)) - x).max() > 0.1


def test_involution_accepts_any_input_size():
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, Involution(3, 2, 2)(inputs))

    for height, width in [(9, 12), (16, 16), (5, 31)]:
        output = model(np.zeros((1, height, width, 8), "float32"))
        assert tuple(output.shape) == (1, -(-height // 2), -(-width // 2), 8)


@pytest.mark.parametrize("stride", [1, 2])
def test_involution_in_a_graph_with_unknown_size_matches_eager(stride):
    import tensorflow as tf

    keras.utils.set_random_seed(4)
    layer = Involution(3, stride, 2, residual_kernel=False)
    graph = tf.function(
        lambda x: layer(x, training=False), input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)]
    )

    for height, width in [(7, 10), (12, 9)]:
        x = np.random.default_rng(height).standard_normal((2, height, width, 4)).astype("float32")
        np.testing.assert_allclose(graph(x).numpy(), keras.ops.convert_to_numpy(layer(x)), atol=1e-6)


def test_involution_save_load_round_trip_gives_identical_predictions(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 4))
    x = Involution(3, 1, 2, residual_kernel=False, name="inv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    images = np.random.default_rng(1).random((3, 10, 10, 4)).astype("float32")
    model.save(tmp_path / "model.keras")

    restored = keras.saving.load_model(tmp_path / "model.keras")

    assert restored.get_layer("inv").get_config() == model.get_layer("inv").get_config()
    np.testing.assert_array_equal(restored.predict(images, verbose=0), model.predict(images, verbose=0))


def test_involution_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match="divisible"):
        Involution(3, 1, 3)(np.zeros((1, 4, 4, 4), "float32"))
