"""The networks' arithmetic: the multiply-adds counter against hand counts, and the cheap network's budget."""

import pytest

from pneumo_batch.training import PRESETS
from pneumo_batch.training.architectures import ARCHITECTURES, build, multiply_adds

#: Building a Keras model imports TensorFlow (several seconds).
pytestmark = pytest.mark.slow

#: Issue 27: the scoring network does at most this many multiply-adds an image.
CHEAP_BUDGET = 3_000_000


def _conv(side, kernel, channels_in, channels_out):
    return side * side * kernel * kernel * channels_in * channels_out


def test_counter_matches_a_hand_count_of_the_three_block_cnn():
    blocks = [(28, 1, 24), (28, 24, 24), (14, 24, 48), (14, 48, 48), (7, 48, 96), (7, 96, 96)]
    expected = sum(_conv(side, 3, cin, cout) for side, cin, cout in blocks) + 96  # the logit's dense layer
    assert multiply_adds(build("pneumo_cnn", 24)) == expected == 16_426_464


def test_separable_network_counts_depthwise_as_one_channel_each_and_fits_the_budget():
    w = 24
    depthwise = [(28, w), (14, w), (14, 2 * w), (7, 2 * w), (7, 4 * w)]
    pointwise = [(28, w, w), (14, w, 2 * w), (14, 2 * w, 2 * w), (7, 2 * w, 4 * w), (7, 4 * w, 4 * w)]
    expected = (
        _conv(28, 3, 1, w)
        + sum(side * side * 9 * channels for side, channels in depthwise)
        + sum(_conv(side, 1, cin, cout) for side, cin, cout in pointwise)
        + 4 * w
    )
    count = multiply_adds(build("pneumo_dsnet", w))
    assert count == expected
    assert count <= CHEAP_BUDGET


def test_every_preset_builds_and_names_a_known_architecture():
    for name, config in PRESETS.items():
        assert config.architecture in ARCHITECTURES, name
        assert multiply_adds(build(config.architecture, config.width)) > 0, name

