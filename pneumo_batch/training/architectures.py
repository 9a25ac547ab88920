"""Keras architectures, selectable by name. Imports TensorFlow only when called.

Every network ends in a single logit; the sigmoid is applied outside the
graph (:class:`pneumo_batch.model.Scorer`). Inside a full-integer model a
sigmoid output is quantized to steps of 1/256, which ties many scores and
cost about 0.01 test AUC in our trials; an int8 logit keeps the ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pneumo_batch.errors import PneumoBatchError
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE

if TYPE_CHECKING:
    import keras


def lesson_cnn(width: int = 32) -> keras.Model:
    """The course lesson's one-block CNN: Conv2D 32, MaxPool, Dense 64, Dropout 0.5, sigmoid.

    Kept to reproduce its published figures (test AUC about 0.93).
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1)),
            layers.Conv2D(width, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(1, name="logit"),
        ],
        name="lesson_cnn",
    )


def pneumo_cnn(width: int = 24) -> keras.Model:
    """The default network: three blocks of two 3x3 convolutions with batch norm, then global pooling.

    The shipped ``models/pneumo-cnn-v2`` is ``width`` 10 (10, 20, 40 filters;
    2.9 M multiply-adds an image). Width 24 (16.4 M) is ``pneumo-cnn-v1`` (the
    teacher of ``dsnet-distilled``) and v1.1: recipe for recipe (3 seeds) it
    scores the same test specificity at the screening point, 0.79, and 0.001
    more test AUC (docs/training.md). Width 32 and an ensemble of three at
    width 24 reached the same validation AUC as width 24.
    """
    import keras
    from keras import layers

    inputs = keras.Input((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1))
    x = inputs
    for block, filters in enumerate((width, 2 * width, 4 * width)):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        if block < 2:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, outputs, name="pneumo_cnn")


def pneumo_dsnet(width: int = 24) -> keras.Model:
    """A depthwise-separable network: a 3x3 stem, then depthwise 3x3 + pointwise 1x1 blocks.

    One block at 28x28 (``width`` channels), two at 14x14 (``2 * width``) and
    two at 7x7 (``4 * width``), then global pooling. A full 3x3 convolution
    costs 9 multiply-adds per input and output channel and pixel; the
    separable pair costs 9 + the output channels per input channel, so with
    ``width`` 24 the network does about 2.3 M multiply-adds an image
    (:func:`multiply_adds`) against the 16 M of :func:`pneumo_cnn` at width 24.
    """
    import keras
    from keras import layers

    def separable(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1))
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = separable(x, width)
    x = layers.MaxPooling2D()(x)
    for _ in range(2):
        x = separable(x, 2 * width)
    x = layers.MaxPooling2D()(x)
    for _ in range(2):
        x = separable(x, 4 * width)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, outputs, name="pneumo_dsnet")


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one image through the convolutions and dense layers of a Keras model.

    Batch norm folds into the convolutions when converted, and pooling,
    activations and additions are not multiply-adds, so these layers are the
    network's arithmetic.
    """
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, height, width, channels = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            total += height * width * channels * kernel_h * kernel_w
        elif isinstance(layer, layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            total += height * width * filters * kernel_h * kernel_w * layer.input.shape[-1]
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "pneumo_cnn": pneumo_cnn,
    "pneumo_dsnet": pneumo_dsnet,
    "lesson_cnn": lesson_cnn,
}


def build(name: str, width: int) -> keras.Model:
    if name not in ARCHITECTURES:
        raise PneumoBatchError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](width=width)
