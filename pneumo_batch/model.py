"""The one place that knows a model directory's layout and its metadata sidecar.

A model directory holds the ``.tflite`` variants, ``metadata.json`` (input
contract, labels, operating points and how they were chosen, quantization,
dataset checksum, metrics, code version, sha256 of every model file), plots,
``MODEL_CARD.md`` and ``reference_profile.parquet`` (the training data's
per-image features and scores, the reference for drift monitoring).

Training writes it with :func:`write_metadata`; everything else reads it with
:func:`load_model`. Scoring runs the ``.tflite`` files through LiteRT
(``ai-edge-litert``) only, never TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumo_batch import storage
from pneumo_batch.errors import ModelError
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE

METADATA_FILE = "metadata.json"
REFERENCE_PROFILE_FILE = "reference_profile.parquet"
FORMAT_VERSION = 1
MODEL_ENV = "PNEUMO_BATCH_MODEL"
#: The file in a models folder that names its default model directory.
DEFAULT_POINTER_FILE = "DEFAULT"

#: The interpreter always runs on blocks of this many images (the last one
#: padded), so a score never depends on how the caller batches its rows.
INFERENCE_BLOCK = 64


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    threshold: float
    rule: str
    """How the threshold was chosen, in words (always on validation data)."""


@dataclass(frozen=True)
class ModelArtifact:
    directory: Path
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def default_variant(self) -> str:
        return str(self.metadata["default_variant"])

    @property
    def operating_points(self) -> list[OperatingPoint]:
        return [
            OperatingPoint(name=name, threshold=float(point["threshold"]), rule=str(point["rule"]))
            for name, point in self.metadata["operating_points"].items()
        ]

    def variant_path(self, variant: str | None = None) -> Path:
        variant = variant or self.default_variant
        variants = self.metadata["variants"]
        if variant not in variants:
            raise ModelError(f"{self.directory}: no variant {variant!r} (has: {', '.join(variants)})")
        return self.directory / variants[variant]["file"]

    def variant_sha256(self, variant: str | None = None) -> str:
        return str(self.metadata["variants"][variant or self.default_variant]["sha256"])

    @property
    def reference_profile_path(self) -> Path:
        return self.directory / REFERENCE_PROFILE_FILE

    @property
    def output(self) -> str:
        """What the network emits: ``logit`` (sigmoid applied by the scorer) or ``probability``."""
        return str(self.metadata.get("output", "probability"))

    def scorer(self, variant: str | None = None, num_threads: int = 1) -> Scorer:
        return Scorer(self.variant_path(variant).read_bytes(), output=self.output, num_threads=num_threads)


def load_model(directory: str | Path | None = None, *, verify: bool = True) -> ModelArtifact:
    """Read a model directory (default: :func:`default_model_dir`) and check its files' sha256."""
    model_dir = Path(directory) if directory is not None else default_model_dir()
    metadata = read_metadata(model_dir)
    for key in ("name", "version", "default_variant", "variants", "operating_points", "input"):
        if key not in metadata:
            raise ModelError(f"{model_dir / METADATA_FILE}: missing key {key!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{model_dir / METADATA_FILE}: format_version {metadata.get('format_version')!r}, "
            f"this pneumo-batch reads {FORMAT_VERSION}"
        )
    if int(metadata["input"].get("size", -1)) != MODEL_INPUT_SIZE:
        raise ModelError(f"{model_dir}: model input size {metadata['input'].get('size')} is not {MODEL_INPUT_SIZE}")
    artifact = ModelArtifact(directory=model_dir, metadata=metadata)
    if verify:
        path = artifact.variant_path()
        if not path.is_file():
            raise ModelError(f"model file missing: {path}")
        actual = file_sha256(path)
        if actual != artifact.variant_sha256():
            raise ModelError(f"{path}: sha256 {actual} does not match the metadata's {artifact.variant_sha256()}")
    return artifact


def read_metadata(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ModelError(f"not a model directory (no {METADATA_FILE}): {model_dir}")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}: metadata must be a JSON object")
    return metadata


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> Path:
    """Write the sidecar atomically, stamping the format version."""
    return storage.write_json(model_dir / METADATA_FILE, {"format_version": FORMAT_VERSION, **metadata}, default=_jsonable)


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_model_dir() -> Path:
    """The model to use when none is named.

    ``PNEUMO_BATCH_MODEL`` if set; otherwise the directory named by the
    ``DEFAULT`` file of the ``models/`` folder shipped with the package (in
    a source checkout the repository's ``models/``, in a wheel a copy inside
    the package), so it is found wherever the command runs from.
    """
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV]).expanduser()
    for models in shipped_models_dirs():
        pointer = models / DEFAULT_POINTER_FILE
        if pointer.is_file():
            return models / pointer.read_text().strip()
    raise ModelError(f"no default model found; pass --model DIR or set {MODEL_ENV}")


def shipped_models_dirs() -> list[Path]:
    package = Path(__file__).resolve().parent
    return [package / "_models", package.parent / "models"]


class Scorer:
    """Runs one ``.tflite`` model through the LiteRT interpreter.

    Integer-quantized inputs and outputs are quantized and dequantized with
    the tensors' own parameters, so every variant takes the float input of
    :func:`pneumo_batch.imaging.preprocess.pixels_to_model_input` and returns
    probabilities; a network that emits a logit gets its sigmoid here, in
    float32.
    """

    def __init__(self, model_content: bytes, output: str = "probability", num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if output not in ("probability", "logit"):
            raise ModelError(f"unknown model output {output!r}; expected 'probability' or 'logit'")
        self._output_is_logit = output == "logit"

        try:
            self._interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"LiteRT cannot load the model: {error}") from None
        input_detail = self._interpreter.get_input_details()[0]
        self._interpreter.resize_tensor_input(
            input_detail["index"], [INFERENCE_BLOCK, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1]
        )
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        """Probabilities of pneumonia, float32 (N,), for float input (N, 28, 28, 1)."""
        count = len(model_input)
        scores = np.empty(count, dtype=np.float32)
        for start in range(0, count, INFERENCE_BLOCK):
            block = model_input[start : start + INFERENCE_BLOCK]
            scores[start : start + len(block)] = self._predict_block(block)
        return scores

    def _predict_block(self, block: np.ndarray) -> np.ndarray:
        padded = np.zeros((INFERENCE_BLOCK, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1), dtype=np.float32)
        padded[: len(block)] = block
        self._interpreter.set_tensor(self._input["index"], _quantize(padded, self._input))
        self._interpreter.invoke()
        output = _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)
        values = output.reshape(INFERENCE_BLOCK, -1)[: len(block), -1]
        return sigmoid(values) if self._output_is_logit else values


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function in float32."""
    logits = logits.astype(np.float32)
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp = np.exp(logits[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def _quantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if values.dtype == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
