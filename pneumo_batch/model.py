"""The one place that knows a model directory's layout and its metadata sidecar.

A model directory holds the ``.tflite`` variants, ``metadata.json`` (input
contract, labels, operating points and how they were chosen, quantization,
dataset checksum, metrics, code version, sha256 of every model file), plots,
``MODEL_CARD.md``, ``model.keras`` (the fitted float network, bare of its
augmentation layers: what ``adapt`` fine-tunes; directories trained before
it existed lack it and still score), ``reference_profile.parquet`` (the training data's
per-image features and scores, the reference for drift monitoring) and,
when it has a scope gate (:mod:`pneumo_batch.scope.gate`), ``scope_gate.npz``
plus ``model_int8_features.tflite``: the deployed variant with its hidden
activations as extra outputs, which scoring then runs instead (same weights,
bit-identical logit), so one interpreter call gives the score and the gate's
features.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from pneumo_batch import native_stderr, storage
from pneumo_batch.errors import ModelError
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE

if TYPE_CHECKING:
    from pneumo_batch.scope.gate import ScopeGate

METADATA_FILE = "metadata.json"
REFERENCE_PROFILE_FILE = "reference_profile.parquet"
#: The float Keras network (metadata key ``keras``: file, sha256, bytes); absent in older directories.
KERAS_FILE = "model.keras"
KERAS_KEY = "keras"
FORMAT_VERSION = 1
MODEL_ENV = "PNEUMO_BATCH_MODEL"
#: The file in a models folder that names its default model directory.
DEFAULT_POINTER_FILE = "DEFAULT"
#: The metadata entry describing the scope gate (absent: the directory has none).
SCOPE_GATE_KEY = "scope_gate"

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
    def keras_path(self) -> Path | None:
        """The float network ``model.keras`` (what fine-tuning starts from), checked, or None when the directory has none.

        Checked here rather than by :func:`load_model`: scoring never reads
        it, so a copy of a directory made for scoring may leave it out.
        """
        entry = self.metadata.get(KERAS_KEY)
        if not entry:
            return None
        verify_file(self.directory / entry["file"], str(entry["sha256"]))
        return self.directory / entry["file"]

    @property
    def reference_profile_path(self) -> Path:
        return self.directory / REFERENCE_PROFILE_FILE

    @property
    def output(self) -> str:
        """What the network emits: ``logit`` (sigmoid applied by the scorer) or ``probability``."""
        return str(self.metadata.get("output", "probability"))

    @property
    def scope_gate_entry(self) -> dict[str, Any] | None:
        """The metadata's description of the scope gate, or None when the directory has none."""
        entry = self.metadata.get(SCOPE_GATE_KEY)
        return dict(entry) if entry else None

    def scope_gate(self) -> ScopeGate | None:
        """The pixel scope gate fitted for this model, or None when the directory has none."""
        entry = self.scope_gate_entry
        if entry is None:
            return None
        from pneumo_batch.scope.gate import read_gate

        return read_gate(self.directory / entry["file"])

    def scoring_file(self) -> tuple[Path, str]:
        """The ``.tflite`` scoring runs and its sha256: the features copy when there is a gate, else the variant.

        Both give the same logit bit for bit, so ``p_pneumonia`` does not
        depend on which one ran.
        """
        entry = self.scope_gate_entry
        if entry is None:
            return self.variant_path(), self.variant_sha256()
        features = entry["features_model"]
        return self.directory / features["file"], str(features["sha256"])

    def scorer(self, variant: str | None = None, num_threads: int = 1) -> Scorer:
        """A LiteRT scorer of ``variant`` (default: what scoring runs, see :meth:`scoring_file`)."""
        path = self.scoring_file()[0] if variant is None else self.variant_path(variant)
        return Scorer(path.read_bytes(), output=self.output, num_threads=num_threads)


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
        files = [(artifact.variant_path(), artifact.variant_sha256())]
        gate = artifact.scope_gate_entry
        if gate is not None:
            features = gate["features_model"]
            if features.get("of_sha256") != artifact.variant_sha256():
                raise ModelError(f"{model_dir}: the scope gate was fitted for another model file; refit it (fit-scope)")
            files += [(model_dir / gate["file"], str(gate["sha256"])), (model_dir / features["file"], str(features["sha256"]))]
        for path, expected in files:
            verify_file(path, expected)
    return artifact


def verify_file(path: Path, expected_sha256: str) -> None:
    """Raise :class:`ModelError` unless ``path`` exists with this sha256."""
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ModelError(f"{path}: sha256 {actual} does not match the metadata's {expected_sha256}")


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


def model_dir_named(name_or_path: str) -> Path:
    """A model directory given as a path, or as the name of one in the shipped models folder."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    for models in shipped_models_dirs():
        if (models / name_or_path).is_dir():
            return models / name_or_path
    raise ModelError(f"no model directory {name_or_path!r}: give a path or the name of a shipped model")


@dataclass(frozen=True)
class NetworkOutput:
    """What one interpreter call gives for a stack of images."""

    probabilities: np.ndarray
    """float32 (N,): exactly what :meth:`Scorer.predict` returns."""
    features: np.ndarray
    """float32 (N, F): per-channel mean of each extra output (the ReLU layers of a features
    model), layers concatenated in graph order; (N, 0) for a model without extra outputs."""


class Scorer:
    """Runs one ``.tflite`` model through the LiteRT interpreter.

    Integer-quantized inputs and outputs are quantized and dequantized with
    the tensors' own parameters, so every variant takes the float input of
    :func:`pneumo_batch.imaging.preprocess.pixels_to_model_input` and returns
    probabilities; a network that emits a logit gets its sigmoid here, in
    float32. A model with extra outputs (the features copy a scope gate
    brings, :func:`pneumo_batch.scope.network.add_feature_outputs`) gives
    their per-channel means from the same call
    (:meth:`predict_with_features`); its first output is the score.
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
        with native_stderr.discarded():  # LiteRT's XNNPACK notice
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output, *self._layers = self._interpreter.get_output_details()
        self.feature_count = sum(int(layer["shape"][-1]) for layer in self._layers)

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        """Probabilities of pneumonia, float32 (N,), for float input (N, 28, 28, 1)."""
        return self.predict_with_features(model_input, features=False).probabilities

    def predict_with_features(self, model_input: np.ndarray, *, features: bool = True) -> NetworkOutput:
        """Probabilities and per-channel feature means from one call per block of 64 images."""
        count = len(model_input)
        scores = np.empty(count, dtype=np.float32)
        means = np.empty((count, self.feature_count if features else 0), dtype=np.float32)
        for start in range(0, count, INFERENCE_BLOCK):
            block = model_input[start : start + INFERENCE_BLOCK]
            scores[start : start + len(block)], means[start : start + len(block)] = self._run_block(block, features)
        return NetworkOutput(probabilities=scores, features=means)

    def _run_block(self, block: np.ndarray, features: bool) -> tuple[np.ndarray, np.ndarray]:
        padded = np.zeros((INFERENCE_BLOCK, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1), dtype=np.float32)
        padded[: len(block)] = block
        self._interpreter.set_tensor(self._input["index"], _quantize(padded, self._input))
        self._interpreter.invoke()
        output = _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)
        values = output.reshape(INFERENCE_BLOCK, -1)[: len(block), -1]
        layers = self._layers if features else []
        means = [_channel_means(self._interpreter.get_tensor(layer["index"]), layer) for layer in layers]
        stacked = np.concatenate(means, axis=1)[: len(block)] if means else np.empty((len(block), 0), np.float32)
        return (sigmoid(values) if self._output_is_logit else values), stacked


def _channel_means(activation: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Per-channel spatial mean of an (N, H, W, C) activation, dequantized after averaging (exact int sums)."""
    flat = activation.reshape(activation.shape[0], -1, activation.shape[-1])
    if activation.dtype == np.float32:
        return flat.mean(axis=1)
    scale, zero_point = detail["quantization"]
    # A product with a vector of ones sums the pixels 4x faster than numpy's int32 sum, and as exactly:
    # every partial sum is an integer below 2**24 (at most 255 * 28 * 28), which float32 holds exactly.
    totals = np.ones(flat.shape[1], dtype=np.float32) @ flat.astype(np.float32)
    return (totals / np.float32(flat.shape[1]) - np.float32(zero_point)) * np.float32(scale)


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
