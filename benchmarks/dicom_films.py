"""The DICOM test corpus builder (tests/dicom_corpus.py), for benchmarks that score DICOM built at run time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_corpus_builder() -> ModuleType:
    """The test corpus builder, by path: the benchmark writes exactly the files the tests check."""
    path = Path(__file__).resolve().parent.parent / "tests" / "dicom_corpus.py"
    spec = importlib.util.spec_from_file_location("dicom_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
