"""The network's own view of an image: its logit and its hidden activations, from one call.

The gate compares an image's activations with those of the training images,
so scoring needs them from the same interpreter call that gives the logit.
:func:`add_feature_outputs` makes a copy of a ``.tflite`` whose subgraph
also outputs every fused-ReLU convolution; nothing else in the flatbuffer
changes (same operators, same weight bytes, same quantization), so the logit
is bit-identical to the original file's. :class:`pneumo_batch.model.Scorer`
runs that copy (``predict_with_features``) and reduces each activation map
to its per-channel mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pneumo_batch.errors import ModelError

_TFLITE_IDENTIFIER = b"TFL3"


def add_feature_outputs(model_content: bytes) -> tuple[bytes, list[str]]:
    """A copy of a ``.tflite`` that also outputs the activation of every fused-ReLU convolution.

    Returns the new flatbuffer and the names of the added outputs, in graph
    order. The first output stays the original one. Needs ``flatbuffers``
    (a dependency of ai-edge-litert); used when a gate is fitted, never
    when scoring.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_content), 0)
    if len(model.subgraphs) != 1:
        raise ModelError(f"expected a model with one subgraph, got {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    conv = _builtin_code(model, schema, schema.BuiltinOperator.CONV_2D)
    relu = schema.ActivationFunctionType.RELU
    added = [
        int(op.outputs[0])
        for op in graph.operators
        if op.opcodeIndex in conv and op.builtinOptions.fusedActivationFunction == relu
    ]
    if not added:
        raise ModelError("the model has no fused-ReLU convolutions to take features from")
    graph.outputs = np.concatenate([np.asarray(graph.outputs, dtype=np.int32), np.asarray(added, dtype=np.int32)])
    builder = flatbuffers.Builder(len(model_content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    names = [graph.tensors[index].name.decode() for index in added]
    return bytes(builder.Output()), names


def weight_buffers(model_content: bytes) -> list[bytes]:
    """The raw bytes of every constant tensor, in tensor order (to prove a copy kept the weights)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_content), 0)
    tensors = model.subgraphs[0].tensors
    data = [model.buffers[tensor.buffer].data for tensor in tensors]
    return [bytes(np.asarray(values, dtype=np.uint8)) for values in data if values is not None]


def _builtin_code(model: Any, schema: Any, operator: int) -> set[int]:
    codes = set()
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == operator:
            codes.add(index)
    return codes
