from __future__ import annotations

import keras
import numpy as np
import pytest

from ml.architectures import GRADCAM_LAYER, VGG16, build_body
from ml.errors import ArchitectureError
from ml.involution import Involution


def _body(arch: str, input_size: int | None, **kwargs) -> keras.Model:
    inputs = keras.Input((input_size, input_size, 1))
    return keras.Model(inputs, build_body(arch, inputs, **kwargs))


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ArchitectureError, match="unknown architecture 'resnet'.*vgg, invgg"):
        _body("resnet", 64)


def test_vgg16_layout_has_thirteen_3x3_convolutions_from_64_to_512_channels():
    model = _body("vgg", None, **VGG16)

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.kernel_size == (3, 3) for layer in convs)
    assert [layer.filters for layer in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 3 + [512] * 3


def test_invgg_has_two_blocks_of_two_then_three_blocks_of_three_involutions():
    model = _body("invgg", 64, width=8)

    per_block = [
        sum(isinstance(layer, Involution) and layer.name.startswith(f"block{b}_") for layer in model.layers)
        for b in range(1, 6)
    ]
    assert per_block == [2, 2, 3, 3, 3]
    assert sum(layer.name.endswith("_pool") for layer in model.layers) == 5


def test_invgg_kernel_generators_see_at_least_eight_features_and_groups_follow_group_channels():
    model = _body("invgg", 64, width=8, group_channels=4)

    # widths 8, 16, 32, 64, 64: reduction ratios 1, 2, 4, 4, 4
    first, last = model.get_layer("block1_inv1"), model.get_layer("block5_inv3")
    assert (first.reduction_ratio, first.groups) == (1, 2)
    assert (last.reduction_ratio, last.groups) == (4, 16)
    assert first.reduce.filters == 8 and last.reduce.filters == 16


@pytest.mark.parametrize("arch", ["vgg", "invgg"])
def test_bodies_accept_any_input_size_and_name_their_last_activation_features(arch):
    model = _body(arch, None, width=4, stem_stride=2)

    for size in (64, 96):
        features = model.predict(np.random.default_rng(0).random((2, size, size, 1)), verbose=0)
        # stride-2 stem and five 2x2 pools: 1/64 of the input, rounded up; 4 * 8 channels at the end
        assert features.shape == (2, -(-size // 64), -(-size // 64), 32)
    assert model.get_layer(GRADCAM_LAYER) is model.layers[-2]


def test_invgg_needs_far_fewer_parameters_than_vgg_of_the_same_width():
    invgg, vgg = _body("invgg", 64, width=16), _body("vgg", 64, width=16)

    assert invgg.count_params() * 5 < vgg.count_params()


def test_invgg_refuses_widths_that_do_not_split_into_groups():
    with pytest.raises(ArchitectureError, match="groups of 2 channels"):
        _body("invgg", 32, width=9, group_channels=2)
