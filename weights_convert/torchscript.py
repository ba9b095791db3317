"""Torch-free reader for the tensors of a TorchScript archive (`torch.jit.save`, e.g. NVlabs `vgg16.pt`).

A TorchScript archive is a zip with `<root>/data.pkl` (the module object: each scripted class is a
`__torch__.<qualname>` global rebuilt with NEWOBJ + BUILD from a dict of its attributes; tensors are
`torch._utils._rebuild_tensor_v2` over persistent storages in `<root>/data/<key>`), plus `code/` and
`constants.pkl`. Only data is read: no code runs, only the globals below are resolved, every
`__torch__.*` class becomes an inert `ScriptObject` holding its attributes.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from weights_convert.errors import CheckpointError

__all__ = ["is_torchscript_archive", "ScriptObject", "load_torchscript"]

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class ScriptObject:
    """An inert stand-in for one scripted module/class instance: `qualname` and its attributes."""

    qualname = "__torch__"

    def __new__(cls, *args: Any) -> ScriptObject:  # NEWOBJ calls __new__ only
        obj = super().__new__(cls)
        obj.attrs = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.attrs.update(state)
        else:
            self.attrs["__state__"] = state

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array reachable through nested attributes, under dotted names (like nn.Module)."""
        out: dict[str, np.ndarray] = {}
        self._collect("", out, 0)
        return out

    def _collect(self, prefix: str, out: dict[str, np.ndarray], depth: int) -> None:
        if depth > 32:
            raise CheckpointError("TorchScript module nesting is too deep")
        for k, v in self.attrs.items():
            name = f"{prefix}{k}"
            if isinstance(v, np.ndarray):
                out[name] = v
            elif isinstance(v, ScriptObject):
                v._collect(name + ".", out, depth + 1)


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if not size:
        return storage[offset].copy()
    need = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1
    if any(s == 0 for s in size):
        return np.zeros(size, storage.dtype)
    if need > storage.size or offset < 0 or any(st < 0 for st in stride):
        raise CheckpointError(f"tensor view {size}/{stride}+{offset} exceeds its storage of {storage.size}")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(st * item for st in stride), writeable=False)
    return np.array(view)


def _identity_tag(value: Any, *_: Any) -> Any:
    return value


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: Any, load_storage: Any):
        super().__init__(f, encoding="latin1")
        self._load_storage = load_storage
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            qual = f"{module}.{name}"
            if qual not in self._classes:
                self._classes[qual] = type(name, (ScriptObject,), {"qualname": qual})
            return self._classes[qual]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *a: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "torch.jit._pickle" and name in ("restore_type_tag", "build_intlist", "build_doublelist",
                                                       "build_boollist", "build_tensorlist"):
            return _identity_tag
        raise CheckpointError(f"TorchScript data references non-allow-listed global '{module}.{name}'")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"unsupported persistent id {str(pid)[:80]!r}")
        return self._load_storage(pid[1], str(pid[2]), int(pid[4]))


def _root(zf: zipfile.ZipFile) -> str | None:
    for n in zf.namelist():
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0]
    return None


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a zip with `<root>/data.pkl` and TorchScript members (`constants.pkl` or `code/`)."""
    try:
        with zipfile.ZipFile(path) as zf:
            root = _root(zf)
            if root is None:
                return False
            names = zf.namelist()
            return f"{root}/constants.pkl" in names or any(n.startswith(f"{root}/code/") for n in names)
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def load_torchscript(path: str | os.PathLike) -> ScriptObject:
    """The archive's top-level module as a `ScriptObject` (use `.state_dict()` for its tensors)."""
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable TorchScript zip archive ({e})") from None
    with zf:
        root = _root(zf)
        if root is None:
            raise CheckpointError(f"{path}: zip archive has no <root>/data.pkl member")
        names = set(zf.namelist())
        order = "<"
        if f"{root}/byteorder" in names and zf.read(f"{root}/byteorder").strip() == b"big":
            order = ">"

        def load_storage(stype: _StorageType, key: str, numel: int) -> np.ndarray:
            member = f"{root}/data/{key}"
            if member not in names:
                raise CheckpointError(f"{path}: storage member {member} is missing")
            raw = zf.read(member)
            nbytes = numel * stype.dtype.itemsize
            if len(raw) < nbytes:
                raise CheckpointError(f"{path}: storage {member} is truncated")
            return np.frombuffer(raw[:nbytes], stype.dtype.newbyteorder(order)).astype(stype.dtype)

        try:
            obj = _Unpickler(io.BytesIO(zf.read(f"{root}/data.pkl")), load_storage).load()
        except CheckpointError as e:
            msg = str(e)
            raise CheckpointError(msg if msg.startswith(path) else f"{path}: {msg}") from None
        except Exception as e:  # untrusted bytes: any parse failure is one clear line
            raise CheckpointError(f"{path}: corrupt TorchScript data.pkl ({type(e).__name__}: {e})") from None
    if not isinstance(obj, ScriptObject):
        raise CheckpointError(f"{path}: top-level TorchScript object is a {type(obj).__name__}, not a module")
    return obj
