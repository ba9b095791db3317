"""Torch-free, restricted readers for official checkpoint containers.

Supported containers:
* NVlabs network pickles (stylegan2-ada-pytorch / stylegan3 training snapshots): plain pickles whose
  networks are `torch_utils.persistence` records and whose storages are nested legacy `torch.save` blobs.
* `torch.save` files: the zip format (torch >= 1.6) and the legacy pre-1.6 stream.

Nothing is ever executed from a file: every unpickler here resolves globals only through an explicit
allow-list of inert stand-ins (our own functions and classes, or harmless builtins), and any other global
aborts loading with `CheckpointError` before anything is called. Embedded source code (`module_src`) is
kept as a string and never run. Tensors come back as C-contiguous numpy arrays (independent copies).
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
import pickle
import struct
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from weights_convert.errors import CheckpointError
from weights_convert.tf_pickles import TFNetwork, is_tf_snapshot

__all__ = [
    "ArgsNamespace",
    "PersistentObj",
    "detect_format",
    "load_nvlabs_pickle",
    "load_torch",
    "sha256_file",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# How pickle protocol >= 2 writes the magic int: LONG1 opcode, 10 bytes, little-endian.
_LEGACY_MAGIC_OPS = b"\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")



class _Problem(Exception):
    """Internal: a format problem; the public entry points prefix the file path."""


# ----------------------------------------------------------------------------------------------------------
# dtypes


def _optional_ml_dtype(name: str) -> np.dtype | None:
    try:
        import ml_dtypes  # shipped with jax; provides bfloat16 / float8 numpy dtypes
    except ImportError:  # pragma: no cover - jax always brings it
        return None
    return np.dtype(getattr(ml_dtypes, name)) if hasattr(ml_dtypes, name) else None


# torch dtype attribute name -> numpy dtype (None: no numpy equivalent available).
_TORCH_DTYPES: dict[str, np.dtype | None] = {
    "float32": np.dtype(np.float32), "float": np.dtype(np.float32),
    "float64": np.dtype(np.float64), "double": np.dtype(np.float64),
    "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
    "bfloat16": _optional_ml_dtype("bfloat16"),
    "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16), "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16), "uint32": np.dtype(np.uint32), "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64), "cfloat": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128), "cdouble": np.dtype(np.complex128),
    "float8_e4m3fn": _optional_ml_dtype("float8_e4m3fn"), "float8_e5m2": _optional_ml_dtype("float8_e5m2"),
}

# Legacy typed-storage class name -> numpy dtype.
_STORAGE_DTYPES: dict[str, np.dtype | None] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": _TORCH_DTYPES["bfloat16"],
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),  # raw bytes; the tensor's dtype comes with _rebuild_tensor_v3
}


class _StorageType:
    """Inert stand-in for a `torch.<X>Storage` class (only used as a tag inside persistent ids)."""

    def __init__(self, name: str, dtype: np.dtype | None):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"<storage type {self.name}>"


class _TorchDType:
    """Inert stand-in for a `torch.<dtype>` object."""

    def __init__(self, name: str, dtype: np.dtype | None):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage: a flat numpy array (None while only scanning a legacy stream for its layout)."""

    def __init__(self, stype: _StorageType, key: str, array: np.ndarray | None):
        self.stype, self.key, self.array = stype, key, array

    def view(self, dtype: np.dtype) -> np.ndarray | None:
        if self.array is None or self.array.dtype == dtype:
            return self.array
        raw = self.array.view(np.uint8)
        usable = raw.size - raw.size % dtype.itemsize
        return raw[:usable].view(dtype)


def _require_dtype(dtype: np.dtype | None, what: str) -> np.dtype:
    if dtype is None:
        raise _Problem(f"{what} has no numpy equivalent here (install ml_dtypes)")
    return dtype


# ----------------------------------------------------------------------------------------------------------
# Allow-listed callables: each is ours, validates its arguments and builds only inert data.


def _tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any,
                         dtype: np.dtype | None = None) -> np.ndarray | None:
    if not isinstance(storage, _Storage):
        raise _Problem(f"tensor rebuilt from a {type(storage).__name__}, expected a storage")
    try:
        offset = int(offset)
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
    except (TypeError, ValueError) as e:
        raise _Problem(f"malformed tensor layout ({e})") from None
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise _Problem(f"malformed tensor layout (offset {offset}, size {size}, stride {stride})")
    if dtype is None:
        dtype = _require_dtype(storage.stype.dtype, storage.stype.name)
    flat = storage.view(dtype)
    if flat is None:  # layout scan of a legacy stream: data not read yet
        return None
    numel = math.prod(size)
    if numel == 0:
        return np.empty(size, dtype)
    if numel > max(flat.size, 1 << 24):  # only zero strides (expanded views) could do this; guard memory
        raise _Problem(f"tensor of size {size} over a storage of {flat.size} elements is implausibly large")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= flat.size:
        raise _Problem(
            f"tensor (offset {offset}, size {size}, stride {stride}) exceeds its storage of {flat.size} "
            f"elements (storage '{storage.key}')")
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * dtype.itemsize for s in stride))
    return np.array(view, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    if not isinstance(dtype, _TorchDType):
        raise _Problem(f"_rebuild_tensor_v3 got dtype {type(dtype).__name__}, expected a torch dtype")
    return _tensor_from_storage(storage, storage_offset, size, stride,
                                _require_dtype(dtype.dtype, f"torch.{dtype.name}"))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data  # extra Python attributes of the Parameter are not needed


class _TensorClass:
    """Inert stand-in for `torch.Tensor` / `torch.nn.Parameter` (appears as an argument only)."""

    def __init__(self, name: str):
        self.name = name


_TENSOR_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
                      _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _TENSOR_REBUILDERS or not isinstance(new_type, _TensorClass) or not isinstance(args, tuple):
        raise _Problem("unsupported tensor subclass reconstruction (_rebuild_from_type_v2)")
    return func(*args)


def _torch_device(*args):
    return ":".join(str(a) for a in args)  # the device is irrelevant on load: keep its name


def _torch_size(dims=()):
    return tuple(int(d) for d in dims)


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):  # Python 2 era pickles: str decoded with latin1
        return data.encode("latin1")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise _Problem(f"numpy data given as {type(data).__name__}, expected bytes")


def _np_dtype(spec, align=False, copy=False):
    if not isinstance(spec, (str, bytes)):
        raise _Problem(f"numpy.dtype called with a {type(spec).__name__}")
    return np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec, bool(align), bool(copy))


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Problem("numpy scalar with an object or invalid dtype")
    raw = _as_bytes(data)
    if len(raw) != dtype.itemsize:
        raise _Problem(f"numpy scalar of dtype {dtype} given {len(raw)} bytes")
    return np.frombuffer(raw, dtype, count=1)[0]


def _np_reconstruct(subtype, shape, dtype_code):
    # numpy's own helper only allocates an empty array; the data arrives via ndarray.__setstate__ (BUILD).
    if subtype is not np.ndarray:
        raise _Problem("numpy array reconstruction of a non-ndarray type")
    if math.prod(shape) > 1 << 20:  # numpy always writes (0,) here; the data comes later
        raise _Problem(f"implausible numpy placeholder shape {shape!r}")
    return np.ndarray.__new__(np.ndarray, tuple(shape), _np_dtype(dtype_code))


def _np_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Problem("numpy buffer with an object or invalid dtype")
    return np.frombuffer(_as_bytes(buf), dtype).reshape(tuple(shape), order=order).copy()


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    # Protocol-2 pickles written by Python 3 encode bytes objects as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Problem("unsupported _codecs.encode call")
    return text.encode("latin1")


def _builtin_bytes(*args):
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray, list, tuple)):
        return bytes(args[0])
    raise _Problem("unsupported bytes() call")


def _builtin_bytearray(data=b"", encoding=None):
    if isinstance(data, str) and encoding in ("latin-1", "latin1"):  # protocol 2 writes (str, 'latin-1')
        return bytearray(data.encode("latin1"))
    if isinstance(data, (bytes, bytearray, list, tuple)) and encoding is None:
        return bytearray(data)
    raise _Problem("unsupported bytearray() call")


class _OrderedDictStub(dict):
    """Stand-in for OrderedDict; torch state_dicts carry `_metadata` as BUILD state, which we drop."""

    def __setstate__(self, state):
        pass


class _EasyDictStub(dict):
    """Stand-in for dnnlib.util.EasyDict (older Pythons pickle an empty `__dict__` as BUILD state)."""

    def __setstate__(self, state):
        pass


class ArgsNamespace(types.SimpleNamespace):
    """Stand-in for `argparse.Namespace`: attribute access, `vars()`, and read-only mapping access."""

    def __setstate__(self, state):
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise _Problem("argparse.Namespace with a malformed state")
        self.__dict__.update(state)

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __len__(self) -> int:
        return len(self.__dict__)

    def keys(self):
        return self.__dict__.keys()

    def items(self):
        return self.__dict__.items()

    def values(self):
        return self.__dict__.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)


_MISSING = object()


class PersistentObj:
    """Inert record of a `torch_utils.persistence` object (an NVlabs network or sub-module).

    `state` is the module's pickled `__dict__`; `module_src` is the embedded source text, kept as data only.
    """

    def __init__(self, meta: dict):
        self.class_name: str = meta["class_name"]
        self.module_src: str = meta.get("module_src", "")
        self.version: Any = meta.get("version")
        self.state: dict = meta["state"]

    def __repr__(self) -> str:
        return f"<PersistentObj {self.class_name}>"

    @property
    def init_kwargs(self) -> dict:
        return copy.deepcopy(dict(self.state.get("_init_kwargs") or {}))

    @property
    def init_args(self) -> tuple:
        return copy.deepcopy(tuple(self.state.get("_init_args") or ()))

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Names and order as `torch.nn.Module.state_dict()` (None entries and non-persistent buffers skipped)."""
        out: dict[str, np.ndarray] = {}
        self._collect(prefix, out)
        return out

    def _collect(self, prefix: str, out: dict) -> None:
        st = self.state
        for name, value in (st.get("_parameters") or {}).items():
            if value is not None:
                out[prefix + name] = value
        skip = st.get("_non_persistent_buffers_set") or set()
        for name, value in (st.get("_buffers") or {}).items():
            if value is not None and name not in skip:
                out[prefix + name] = value
        for name, child in (st.get("_modules") or {}).items():
            if isinstance(child, PersistentObj):
                child._collect(f"{prefix}{name}.", out)

    def children(self) -> dict[str, PersistentObj]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, PersistentObj)}

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, PersistentObj]]:
        yield prefix, self
        for name, child in self.children().items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def module(self, path: str) -> PersistentObj:
        """Sub-module by dotted path, e.g. `G.module("synthesis.b4.conv1")`."""
        obj: Any = self
        for part in path.split(".") if path else ():
            obj = obj.children().get(part) if isinstance(obj, PersistentObj) else None
            if obj is None:
                raise KeyError(f"{self.class_name} has no sub-module {path!r}")
        return obj

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        """Parameter, buffer, child module or plain attribute, looked up as torch.nn.Module does."""
        st = self.state
        for group in ("_parameters", "_buffers", "_modules"):
            table = st.get(group) or {}
            if name in table:
                return table[name]
        if name in st:
            return st[name]
        if default is not _MISSING:
            return default
        raise AttributeError(f"{self.class_name} has no attribute {name!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("state", "class_name", "module_src", "version"):
            raise AttributeError(name)
        return self.attr(name)


def _check_module_state(name: str, state: dict) -> None:
    """The torch.nn.Module bookkeeping a record must have, so that walking the tree never meets junk."""
    for group, allowed in (("_parameters", np.ndarray), ("_buffers", np.ndarray), ("_modules", PersistentObj)):
        table = state.get(group)
        if table is not None and not isinstance(table, dict):
            raise _Problem(f"persistence record {name}: {group} is a {type(table).__name__}, expected a dict")
        # None: an absent optional tensor / module (and every tensor while a legacy stream is only scanned)
        for key, value in (table or {}).items():
            if not isinstance(key, str):
                raise _Problem(f"persistence record {name}: {group} has a non-string name {key!r}")
            if value is not None and not isinstance(value, allowed):
                raise _Problem(f"persistence record {name}: {group}[{key!r}] is a {type(value).__name__}, "
                               f"expected {'a module record' if group == '_modules' else 'a tensor'}")
    if not isinstance(state.get("_non_persistent_buffers_set"), set | frozenset | None):
        raise _Problem(f"persistence record {name}: _non_persistent_buffers_set is a "
                       f"{type(state['_non_persistent_buffers_set']).__name__}, expected a set")
    kwargs, args = state.get("_init_kwargs"), state.get("_init_args")
    if not isinstance(kwargs, dict | None) or not isinstance(args, tuple | list | None):
        raise _Problem(f"persistence record {name}: _init_kwargs / _init_args are {type(kwargs).__name__} / "
                       f"{type(args).__name__}, expected a dict / a tuple")


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise _Problem("malformed persistence record (expected a dict with a 'state' dict)")
    if meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise _Problem(f"unsupported persistence record type {meta.get('type')!r}")
    _check_module_state(meta["class_name"], meta["state"])
    return PersistentObj(meta)


# ----------------------------------------------------------------------------------------------------------
# The allow-list


def _build_allow_list() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _OrderedDictStub,
        ("dnnlib.util", "EasyDict"): _EasyDictStub,
        ("dnnlib", "EasyDict"): _EasyDictStub,
        ("argparse", "Namespace"): ArgsNamespace,
        ("dnnlib.tflib.network", "Network"): TFNetwork,  # TF-era snapshots: (G, D, Gs), state only
        ("tfutil", "Network"): TFNetwork,  # PGGAN's TF snapshots
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _TensorClass("Tensor"),
        ("torch.nn.parameter", "Parameter"): _TensorClass("Parameter"),
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("torch", "device"): _torch_device,
        ("torch", "Size"): _torch_size,
        ("numpy", "dtype"): _np_dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("_codecs", "encode"): _codecs_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "scalar")] = _np_scalar
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _np_reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = _np_frombuffer
    for builtins_mod in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("slice", slice), ("complex", complex),
                          ("bytearray", _builtin_bytearray), ("bytes", _builtin_bytes)):
            allowed[(builtins_mod, name)] = obj
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(name, dtype)
        allowed[("torch.cuda", name)] = _StorageType(name, dtype)  # saved from GPU: loaded on CPU
    allowed[("torch.storage", "UntypedStorage")] = allowed[("torch", "UntypedStorage")]
    for name, dtype in _TORCH_DTYPES.items():
        allowed[("torch", name)] = _TorchDType(name, dtype)
    return allowed


class _Unpickler(pickle.Unpickler):
    """Unpickler that resolves globals only through the allow-list and storages only through `load_storage`."""

    def __init__(self, file, load_storage: Callable[[tuple], Any] | None = None):
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            if module.startswith("__torch__"):
                raise _Problem(f"TorchScript archive (torch.jit.save) is not supported (global '{module}.{name}')")
            raise _Problem(f"pickle references non-allow-listed global '{module}.{name}'")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise _Problem("pickle uses persistent ids where none are expected")
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            raise _Problem("file holds a pickled torch.nn.Module (torch.save(model)); save its state_dict")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise _Problem(f"unsupported persistent id {str(pid)[:80]!r}")
        return self._load_storage(pid)


def _plain_load(f) -> Any:
    """One pickle without globals or persistent ids (legacy header records)."""
    return _Unpickler(f).load()


# ----------------------------------------------------------------------------------------------------------
# Legacy (non-zip) torch.save stream


def _legacy_storage_key(pid: tuple) -> str:
    return str(pid[2])


def _read_legacy(f: io.BytesIO) -> Any:
    """Parse a legacy torch.save stream (also the per-storage blobs inside NVlabs pickles)."""
    if _plain_load(f) != LEGACY_MAGIC:
        raise _Problem("not a legacy torch.save stream (bad magic number)")
    protocol = _plain_load(f)
    if protocol != LEGACY_PROTOCOL:
        raise _Problem(f"unsupported legacy torch.save protocol {protocol!r}")
    sys_info = _plain_load(f)
    byteorder = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
    body_start = f.tell()

    # Pass 1: learn each storage's type (needed to size its data) and find where the object pickle ends.
    types_by_key: dict[str, _StorageType] = {}

    def scan_storage(pid: tuple) -> _Storage:
        key = _legacy_storage_key(pid)
        types_by_key[key] = pid[1]
        return _Storage(pid[1], key, None)

    _Unpickler(f, scan_storage).load()
    keys = _plain_load(f)
    if not isinstance(keys, list):
        raise _Problem("legacy torch.save stream has a malformed storage key list")

    arrays: dict[str, np.ndarray] = {}
    here = f.tell()
    total = f.seek(0, io.SEEK_END)
    f.seek(here)
    for key in keys:
        key = str(key)
        stype = types_by_key.get(key)
        if stype is None:
            raise _Problem(f"legacy storage key {key!r} is not referenced by the pickled object")
        dtype = _require_dtype(stype.dtype, stype.name).newbyteorder(byteorder)
        head = f.read(8)
        if len(head) < 8:
            raise _Problem(f"file is truncated (storage {key!r} is missing)")
        (count,) = struct.unpack(byteorder + "q", head)
        nbytes = count * dtype.itemsize
        if count < 0:
            raise _Problem(f"corrupt storage record (storage {key!r} declares {count} elements)")
        left = total - f.tell()
        if nbytes > left:  # checked before reading: a forged count must not allocate
            raise _Problem(f"file is truncated (storage {key!r} needs {nbytes} bytes, {left} present)")
        raw = f.read(nbytes)
        arrays[key] = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="), copy=False)
    end = f.tell()

    # Pass 2: rebuild the object with the data at hand.
    def load_storage(pid: tuple) -> _Storage:
        key = _legacy_storage_key(pid)
        if key not in arrays:
            raise _Problem(f"legacy storage {key!r} has no data")
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return _Storage(pid[1], key, arrays[key])
        # pre-1.0 storage views: (view_key, offset, size) into the root storage
        try:
            _, v_off, v_size = view
            v_off, v_size = int(v_off), int(v_size)
        except (TypeError, ValueError):
            raise _Problem(f"malformed storage view metadata {view!r}") from None
        return _Storage(pid[1], key, arrays[key][v_off:v_off + v_size])

    f.seek(body_start)
    obj = _Unpickler(f, load_storage).load()
    f.seek(end)
    return obj


def _load_from_bytes(blob):
    if not isinstance(blob, (bytes, bytearray)):
        raise _Problem("torch.storage._load_from_bytes called without bytes")
    storage = _read_legacy(io.BytesIO(blob))
    if not isinstance(storage, _Storage):
        raise _Problem(f"nested torch.save blob holds a {type(storage).__name__}, expected a storage")
    return storage


_ALLOWED = _build_allow_list()


# ----------------------------------------------------------------------------------------------------------
# Post-processing: stand-ins -> plain Python / numpy


def _finalize(obj: Any, memo: dict[int, tuple[Any, Any]]) -> Any:
    hit = memo.get(id(obj))
    if hit is not None:
        return hit[1]
    if isinstance(obj, (np.ndarray, np.generic, str, bytes, int, float, type(None))):
        return obj
    if isinstance(obj, _Storage):
        out: Any = None if obj.array is None else np.array(obj.array)
        memo[id(obj)] = (obj, out)
        return out
    if isinstance(obj, (_OrderedDictStub, _EasyDictStub)):
        out = {}
        memo[id(obj)] = (obj, out)
        for k, v in obj.items():
            out[k] = _finalize(v, memo)
        return out
    if type(obj) is dict:
        memo[id(obj)] = (obj, obj)
        for k, v in list(obj.items()):
            obj[k] = _finalize(v, memo)
        return obj
    if type(obj) is list:
        memo[id(obj)] = (obj, obj)
        obj[:] = [_finalize(v, memo) for v in obj]
        return obj
    if type(obj) is tuple:
        out = tuple(_finalize(v, memo) for v in obj)
        memo[id(obj)] = (obj, out)
        return out
    if isinstance(obj, PersistentObj):
        memo[id(obj)] = (obj, obj)
        obj.state = _finalize(obj.state, memo)
        return obj
    if isinstance(obj, TFNetwork):
        memo[id(obj)] = (obj, obj)
        obj.static_kwargs = _finalize(obj.static_kwargs, memo)
        obj.components = _finalize(obj.components, memo)
        return obj
    if isinstance(obj, ArgsNamespace):
        memo[id(obj)] = (obj, obj)
        for k, v in list(obj.__dict__.items()):
            obj.__dict__[k] = _finalize(v, memo)
        return obj
    if isinstance(obj, (_StorageType, _TorchDType, _TensorClass)):
        return obj.dtype if isinstance(obj, _TorchDType) else obj
    return obj


# ----------------------------------------------------------------------------------------------------------
# Public API


def _fail(path: Path | str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {' '.join(str(problem).split())}")


def _read_head(path: Path, n: int = 64) -> bytes:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a directory, expected a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(n)
    except OSError as e:
        raise _fail(path, f"cannot read file ({e.strerror or e})") from None
    if not head:
        raise _fail(path, "file is empty")
    return head


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (provenance records)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _zip_root(zf: zipfile.ZipFile) -> str | None:
    for name in zf.namelist():
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0]
    return None


def detect_format(path: str | os.PathLike) -> str:
    """Sniff a checkpoint: "nvlabs_pkl" (plain pickle), "torch_zip", "torch_legacy" or "npz"."""
    path = Path(path)
    head = _read_head(path)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                root = _zip_root(zf)
        except Exception as e:  # BadZipFile, OSError, EOFError, ValueError, NotImplementedError: all "corrupt"
            raise _fail(path, f"truncated or corrupt zip archive ({type(e).__name__}: {e})") from None
        if root is not None:
            return "torch_zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise _fail(path, "zip archive has no <root>/data.pkl member (neither a torch.save file nor an .npz)")
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch_legacy" if head[2:14] == _LEGACY_MAGIC_OPS else "nvlabs_pkl"
    if head.startswith(b"\x93NUMPY"):
        raise _fail(path, "is a single .npy array, not a checkpoint")
    raise _fail(path, f"not a recognised checkpoint format (file starts with {head[:8]!r})")


def _describe_exception(e: BaseException) -> str:
    if isinstance(e, _Problem):
        return str(e)
    if isinstance(e, zipfile.BadZipFile | zipfile.LargeZipFile):  # CRC mismatch, damaged member header, ...
        return f"truncated or corrupt zip archive ({e})"
    if isinstance(e, EOFError) or "truncated" in str(e):
        return f"file is truncated or corrupt (pickle stream ends early: {e or type(e).__name__})"
    if isinstance(e, RecursionError):
        return "pickle nesting is too deep"
    return f"corrupt pickle stream ({type(e).__name__}: {e})"


def _guarded(path: Path, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except CheckpointError:
        raise
    except MemoryError:
        raise _fail(path, "corrupt file (implausibly large allocation requested)") from None
    except Exception as e:  # any parsing failure of untrusted bytes becomes one clear line
        raise _fail(path, _describe_exception(e)) from None


def load_nvlabs_pickle(path: str | os.PathLike) -> dict | tuple:
    """Read an NVlabs network pickle (stylegan2-ada-pytorch / stylegan3 snapshot) without torch.

    Returns the top-level snapshot dict; networks are `PersistentObj` (`.state_dict()`, `.init_kwargs`,
    `.class_name`, `.attr(name)`), tensors numpy arrays, EasyDicts/OrderedDicts plain dicts. A TF-era
    snapshot is returned as its `(G, D, Gs)` tuple of `tf_pickles.TFNetwork`.
    """
    path = Path(path)
    kind = detect_format(path)
    if kind != "nvlabs_pkl":
        raise _fail(path, f"is a {kind} file, not an NVlabs network pickle (use load_torch for torch.save files)")

    def run() -> Any:
        with open(path, "rb") as f:
            obj = _Unpickler(f).load()
        return _finalize(obj, {})

    data = _guarded(path, run)
    if is_tf_snapshot(data):
        return data
    if not isinstance(data, dict):
        raise _fail(path, f"top-level object is a {type(data).__name__}, expected an NVlabs snapshot dict")
    if not any(isinstance(v, PersistentObj) for v in data.values()):
        raise _fail(path, f"pickle holds no network (top-level keys: {sorted(map(str, data))})")
    return data


# A zip member may declare at most this many uncompressed bytes per byte of archive (torch writes members
# stored, ratio 1): a deflated or forged member must not make us allocate far more than the file holds.
_MEMBER_EXPANSION = 16
_MEMBER_FLOOR = 64 << 20


def _read_member(zf: zipfile.ZipFile, name: str, archive_bytes: int) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > max(_MEMBER_EXPANSION * archive_bytes, _MEMBER_FLOOR):
        raise _Problem(f"zip member {name!r} declares {info.file_size} bytes uncompressed, implausible for an "
                       f"archive of {archive_bytes} bytes")
    return zf.read(name)


def _load_torch_zip(path: Path) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except Exception as e:  # BadZipFile, OSError, EOFError, ValueError, NotImplementedError: all "corrupt"
        raise _fail(path, f"truncated or corrupt zip archive ({type(e).__name__}: {e})") from None
    archive_bytes = path.stat().st_size
    with zf:
        root = _zip_root(zf)
        if root is None:
            raise _fail(path, "zip archive has no <root>/data.pkl member (not a torch.save file)")
        names = set(zf.namelist())
        cache: dict[str, np.ndarray] = {}
        byteorder = "<"

        def load_storage(pid: tuple) -> _Storage:
            stype, key, numel = pid[1], str(pid[2]), pid[4]
            dtype = _require_dtype(stype.dtype, stype.name)
            if not isinstance(numel, int) or numel < 0:
                raise _Problem(f"storage {key!r} declares {numel!r} elements")
            nbytes = numel * dtype.itemsize
            if key not in cache:
                member = f"{root}/data/{key}"
                if member not in names:
                    raise _Problem(f"storage member {member!r} is missing")
                if zf.getinfo(member).file_size < nbytes:  # checked before reading: numel may be forged
                    raise _Problem(f"storage {key!r} holds {zf.getinfo(member).file_size} bytes, expected {nbytes} "
                                   "(truncated file?)")
                cache[key] = np.frombuffer(_read_member(zf, member, archive_bytes), np.uint8)
            raw = cache[key]
            if raw.size < nbytes:
                raise _Problem(f"storage {key!r} holds {raw.size} bytes, expected {nbytes} (truncated file?)")
            flat = raw[:nbytes].view(dtype.newbyteorder(byteorder))
            return _Storage(stype, key, flat.astype(dtype, copy=False))

        def run() -> Any:
            nonlocal byteorder
            if f"{root}/byteorder" in names:
                order = _read_member(zf, f"{root}/byteorder", archive_bytes).decode("ascii", "replace").strip()
                if order not in ("little", "big"):
                    raise _Problem(f"unknown byteorder record {order[:40]!r}")
                byteorder = "<" if order == "little" else ">"
            data = _read_member(zf, f"{root}/data.pkl", archive_bytes)
            return _finalize(_Unpickler(io.BytesIO(data), load_storage).load(), {})

        return _guarded(path, run)


def load_torch(path: str | os.PathLike) -> Any:
    """Read a `torch.save` file (zip or legacy stream) without torch.

    Tensors come back as numpy arrays, OrderedDict as dict, argparse.Namespace as `ArgsNamespace`.
    """
    path = Path(path)
    kind = detect_format(path)
    if kind == "torch_zip":
        return _load_torch_zip(path)
    if kind == "torch_legacy":
        def run() -> Any:
            with open(path, "rb") as f:
                obj = _read_legacy(io.BytesIO(f.read()))
            return _finalize(obj, {})

        return _guarded(path, run)
    hint = " (use load_nvlabs_pickle for NVlabs network pickles)" if kind == "nvlabs_pkl" else ""
    raise _fail(path, f"is a {kind} file, not a torch.save file{hint}")

