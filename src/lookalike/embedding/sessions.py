"""ONNX Runtime sessions: the one runtime Lookalike runs models with."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from lookalike.core.errors import ModelUnavailable

log = logging.getLogger(__name__)

# CUDA first when this onnxruntime build has it (onnxruntime-gpu); CPU always as the fallback,
# so a GPU build on a machine without a usable GPU still runs.
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")

_NUMPY_TYPES: Mapping[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def available_providers() -> list[str]:
    have = set(ort.get_available_providers())
    return [p for p in _PREFERRED_PROVIDERS if p in have]


class OrtSession:
    """One ONNX graph loaded into ONNX Runtime, with its input and output names read from the graph.

    `run` is safe to call from several threads: ORT sessions are thread-safe for inference.
    """

    def __init__(self, model_path: Path, *, threads: int = 0, providers: list[str] | None = None):
        options = ort.SessionOptions()
        # 0 lets ORT pick (one thread per physical core); a service sharing the box sets fewer.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads spin by default, which takes the CPU the ingest threads decoding the
        # next batch need; measured on a busy 2-core box: 108 vs 85 images/s with 2 threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The memory arena stays on: without it every batch maps and faults in fresh activation
        # buffers, which measured ~30% slower for EfficientNet-Lite0 at batch 16-32 on 2 cores.
        options.log_severity_level = 3
        self.path = model_path
        self.providers = providers if providers is not None else available_providers()
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=self.providers
            )
        except Exception as exc:  # ORT raises its own untyped exceptions for bad graphs
            raise ModelUnavailable(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        self.input_names: list[str] = [i.name for i in inputs]
        self.output_names: list[str] = [o.name for o in outputs]
        self.input_types: dict[str, type[np.generic]] = {
            i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in inputs
        }
        self.input_shapes: dict[str, list[Any]] = {i.name: list(i.shape) for i in inputs}

    @property
    def input_name(self) -> str:
        return self.input_names[0]

    def run(
        self, inputs: Mapping[str, NDArray[Any]], output_names: list[str] | None = None
    ) -> list[NDArray[Any]]:
        feed = {
            name: np.ascontiguousarray(value, dtype=self.input_types[name])
            for name, value in inputs.items()
        }
        result: list[NDArray[Any]] = self._session.run(output_names or self.output_names, feed)
        return result

    def run_one(self, value: NDArray[Any], output_name: str | None = None) -> NDArray[Any]:
        """Feed the graph's first input, return one output (the first unless named)."""
        out = self.run({self.input_name: value}, [output_name or self.output_names[0]])
        return out[0]

    def __repr__(self) -> str:
        return f"OrtSession({self.path.name}, providers={self.providers})"


def ort_session(model_path: Path, *, threads: int = 0) -> OrtSession:
    """Load `model_path` with the preferred providers and `threads` intra-op threads."""
    session = OrtSession(model_path, threads=threads)
    log.debug("loaded %s with %s", model_path, session.providers)
    return session
