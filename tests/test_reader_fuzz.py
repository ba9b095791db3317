"""Malformed checkpoints (issue 13, item 3): every reader failure is ONE `CheckpointError` line that names the
file, and `python -m weights_convert FILE OUT` exits non-zero with one stderr line and no traceback.

Variants are made deterministically from the genuine golden containers: byte truncations, seeded byte flips,
and structural edits (dropped modules / keys, wrong shapes and dtypes, huge declared sizes, junk objects)
re-written by a small torch-free writer that emits the official opcodes and globals."""

from __future__ import annotations

import copy
import functools
import json
import pickle
import random
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:  # tests/ as a package (tests/__init__.py) or as a plain folder that pytest put on sys.path
    from tests import _pickle_fixtures as fx
    from tests.conftest import GOLDEN, ROOT, require
except ImportError:
    import _pickle_fixtures as fx
    from conftest import GOLDEN, ROOT, require

import jaxinv
from jaxinv.errors import CheckpointError
from weights_convert.torch_formats import ArgsNamespace, PersistentObj, load_nvlabs_pickle, load_torch

CONTAINERS = GOLDEN / "containers"
SG2 = "sg2ada_r32_resnet_clamp.pkl"
SG3 = "sg3t_r64.pkl"
ROS = "rosinality_r64_cm1.converted.pt"
ROS_TRAIN = "rosinality_r64_cm1.train.pt"
BIGGAN = "biggan_128_ch8/pytorch_model.bin"
BIGGAN_LEGACY = "biggan_128_ch8/pytorch_model.legacy.bin"
TF_ERA = ["pggan_r32.pkl", "stylegan1_r32.pkl", "stylegan2tf_r32_skip.pkl"]


# ----------------------------------------------------------------------------------------------------------
# A torch-free writer: the opcodes and globals of pickle.dump / torch.save, from plain Python + numpy data


class Glob:
    """A global written into the stream by name; never resolved or called here."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise AssertionError("never called")


class _Call:
    """REDUCE(fn, args) [+ BUILD(state)]."""

    def __init__(self, fn: Glob, args: tuple = (), state: Any = None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


class _Pid:
    """Written as a persistent id (BINPERSID), like torch's storages."""

    def __init__(self, pid: tuple):
        self.pid = pid


class _Raw:
    """Opcodes written verbatim; they must push exactly one object (e.g. nesting deeper than Python recursion)."""

    def __init__(self, ops: bytes):
        self.ops = ops


def _deep_list(depth: int) -> _Raw:
    return _Raw(b"]" * depth + b"a" * (depth - 1))  # EMPTY_LIST x depth, then APPEND each into the one below


class Tensor:
    """A tensor to write; the keyword arguments override what the stream declares (malformed variants)."""

    def __init__(self, array: np.ndarray, *, storage: str | None = None, size: tuple | None = None,
                 stride: tuple | None = None, offset: int = 0, numel: int | None = None, count: int | None = None):
        self.array = np.array(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        self.storage, self.size, self.stride, self.offset = storage, size, stride, offset
        self.numel, self.count = numel, count


_STORAGE_NAMES = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
                  "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage",
                  "uint8": "ByteStorage", "bool": "BoolStorage", "complex64": "ComplexFloatStorage"}


class _Writer(pickle._Pickler):  # the pure-Python pickler: its dispatch table can take our markers
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_glob(self, obj: Glob) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Glob] = _save_glob
    dispatch[_Raw] = lambda self, obj: self.write(obj.ops)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Pid) else None


def _dumps(obj: Any, protocol: int) -> bytes:
    import io

    buf = io.BytesIO()
    _Writer(buf, protocol).dump(obj)
    return buf.getvalue()


_ORDERED_DICT = Glob("collections", "OrderedDict")


def _tensor_call(t: Tensor, storage: Any) -> _Call:
    a = t.array
    size = tuple(a.shape) if t.size is None else t.size
    stride = tuple(s // max(a.itemsize, 1) for s in a.strides) if t.stride is None else t.stride
    return _Call(Glob("torch._utils", "_rebuild_tensor_v2"),
                 (storage, t.offset, size, stride, False, _Call(_ORDERED_DICT)))


def _storage_pid(t: Tensor, key: str, legacy: bool) -> _Pid:
    stype = Glob("torch", t.storage or _STORAGE_NAMES[t.array.dtype.name])
    numel = t.array.size if t.numel is None else t.numel
    return _Pid(("storage", stype, key, "cpu", numel) + ((None,) if legacy else ()))


def _storage_record(t: Tensor) -> bytes:
    """Legacy per-storage data record: int64 element count + raw bytes."""
    count = t.array.size if t.count is None else t.count
    return np.int64(count).tobytes() + t.array.tobytes()


def _encode(obj: Any, mode: str, sink: dict[str, Tensor], tensors: bool = True, memo: dict | None = None) -> Any:
    """Loaded data -> writer markers. mode: "nvlabs" (storages as nested torch.save blobs), "zip", "legacy"."""
    memo = {} if memo is None else memo
    rec = functools.partial(_encode, mode=mode, sink=sink, memo=memo)
    if isinstance(obj, np.ndarray) and tensors:
        obj = Tensor(obj)
    if isinstance(obj, Tensor):
        if mode == "nvlabs":
            blob = fx.legacy_stream(_dumps(_storage_pid(obj, "0", True), 2), ["0"], _storage_record(obj))
            return _tensor_call(obj, _Call(Glob("torch.storage", "_load_from_bytes"), (blob,)))
        key = str(len(sink))
        sink[key] = obj
        return _tensor_call(obj, _storage_pid(obj, key, mode == "legacy"))
    if isinstance(obj, PersistentObj):
        state = {k: rec(v, tensors=k in ("_parameters", "_buffers")) for k, v in obj.state.items()}
        meta = {"type": "class", "version": obj.version, "module_src": obj.module_src,
                "class_name": obj.class_name, "state": state}
        return _Call(Glob("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,))
    if isinstance(obj, ArgsNamespace):
        return _Call(Glob("argparse", "Namespace"), (), {k: rec(v, tensors=tensors) for k, v in vars(obj).items()})
    if type(obj) is dict:
        if id(obj) in memo:  # shared or self-referencing dicts stay shared (pickle's memo writes a GET)
            return memo[id(obj)]
        out = memo[id(obj)] = {}
        out.update((k, rec(v, tensors=tensors)) for k, v in obj.items())
        return out
    if type(obj) is list:
        return [rec(v, tensors=tensors) for v in obj]
    if type(obj) is tuple:
        return tuple(rec(v, tensors=tensors) for v in obj)
    return obj


def write_nvlabs(path: Path, snapshot: dict, protocol: int = 4) -> Path:
    """An NVlabs network pickle (as training_loop.py's pickle.dump writes it)."""
    path.write_bytes(_dumps({k: _encode(v, "nvlabs", {}, tensors=False) for k, v in snapshot.items()}, protocol))
    return path


def write_torch_zip(path: Path, obj: Any) -> Path:
    """A torch.save zip archive (torch >= 1.6 layout)."""
    sink: dict[str, Tensor] = {}
    data = _dumps(_encode(obj, "zip", sink), 2)
    root = path.stem
    members = {f"{root}/data.pkl": data, f"{root}/byteorder": b"little"}
    members.update({f"{root}/data/{k}": t.array.tobytes() for k, t in sink.items()})
    members[f"{root}/version"] = b"3\n"
    return fx.write_zip(path, members)


def write_torch_legacy(path: Path, obj: Any) -> Path:
    """A pre-1.6 torch.save stream."""
    sink: dict[str, Tensor] = {}
    data = _dumps(_encode(obj, "legacy", sink), 2)
    path.write_bytes(fx.legacy_stream(data, list(sink), b"".join(_storage_record(t) for t in sink.values())))
    return path


# ----------------------------------------------------------------------------------------------------------
# Checking one variant


def _load(path: Path) -> Any:
    """The library path a user takes: jaxinv.load (read_source + conversion)."""
    return jaxinv.load(path)


def _clean_failure(path: Path, fn: Callable[[Path], Any] = _load, must_fail: bool = True,
                   names: tuple[str, ...] = ()) -> str | None:
    """Run fn(path); a failure must be one CheckpointError line naming the file (or one of `names`: the file
    at fault, e.g. a config.json beside the weights). Returns the message."""
    try:
        fn(path)
    except CheckpointError as e:
        msg = str(e)
        assert any(n in msg for n in (path.name, *names)), f"{path.name}: message does not name the file: {msg!r}"
        assert "\n" not in msg and msg.strip(), f"{path.name}: not one line: {msg!r}"
        return msg
    except BaseException as e:  # noqa: B036 - anything else (KeyError, MemoryError, ...) is the bug we hunt
        raise AssertionError(f"{path.name}: {type(e).__name__} escaped instead of CheckpointError: {e!r}") from e
    assert not must_fail, f"{path.name}: malformed file was accepted"
    return None


@functools.cache
def _golden_bytes(rel: str) -> bytes:
    return require(CONTAINERS / rel).read_bytes()


@functools.cache
def _loaded_nvlabs(rel: str) -> dict:
    data = load_nvlabs_pickle(require(CONTAINERS / rel))
    return {"G_ema": data["G_ema"], "training_set_kwargs": data["training_set_kwargs"]}


@functools.cache
def _loaded_torch(rel: str) -> Any:
    return load_torch(require(CONTAINERS / rel))


def _place(tmp_path: Path, rel: str, raw: bytes, name: str) -> Path:
    """Write raw bytes under a fresh name; BigGAN files keep their config.json beside them."""
    folder = tmp_path / name
    folder.mkdir()
    if rel.startswith("biggan_128_ch8/"):
        shutil.copy(require(CONTAINERS / "biggan_128_ch8" / "config.json"), folder / "config.json")
    path = folder / Path(rel).name
    path.write_bytes(raw)
    return path


# ----------------------------------------------------------------------------------------------------------
# The writer itself: unmodified data round-trips (so that a refused variant is refused for its edit)


def test_writer_round_trip(tmp_path):
    sd = _loaded_nvlabs(SG2)["G_ema"].state_dict()
    for protocol in (2, 4):
        got = load_nvlabs_pickle(write_nvlabs(tmp_path / f"p{protocol}.pkl", _loaded_nvlabs(SG2), protocol))
        assert list(got["G_ema"].state_dict()) == list(sd)
        assert all(np.array_equal(got["G_ema"].state_dict()[k], v) for k, v in sd.items())
    assert _load(write_nvlabs(tmp_path / "sg3.pkl", _loaded_nvlabs(SG3))).family == "stylegan3"
    ros = _loaded_torch(ROS)
    for writer in (write_torch_zip, write_torch_legacy):
        path = writer(tmp_path / f"{writer.__name__}.pt", ros)
        assert _load(path).family == "rosinality"
        assert all(np.array_equal(load_torch(path)["g_ema"][k], v) for k, v in ros["g_ema"].items())


# ----------------------------------------------------------------------------------------------------------
# Byte-level damage of the genuine containers

BYTE_CASES = [SG2, SG3, ROS, ROS_TRAIN, BIGGAN, BIGGAN_LEGACY, *TF_ERA]


@pytest.mark.parametrize("rel", BYTE_CASES)
def test_truncated(tmp_path, rel):
    raw = _golden_bytes(rel)
    n = len(raw)
    for keep in sorted({1, 2, 5, 13, 64, 300, 4096, n // 7, n // 3, n // 2, n - 4096, n - 100, n - 1}):
        _clean_failure(_place(tmp_path, rel, raw[:keep], f"cut{keep}"))


@pytest.mark.parametrize("rel", [ROS, BIGGAN])
def test_zip_members_truncated_or_dropped(tmp_path, rel):
    members = fx.zip_members(require(CONTAINERS / rel))
    pkl = next(k for k in members if k.endswith("/data.pkl"))
    data0 = next(k for k in members if "/data/" in k)
    variants = {
        "pkl_half": {**members, pkl: members[pkl][: len(members[pkl]) // 2]},
        "pkl_empty": {**members, pkl: b""},
        "pkl_no_stop": {**members, pkl: members[pkl][:-1]},
        "storage_short": {**members, data0: members[data0][:-1]},
        "storage_gone": {k: v for k, v in members.items() if k != data0},
        "byteorder_junk": {**members, next(k for k in members if k.endswith("/byteorder")): b"\xff\xfe sideways"},
    }
    for name, m in variants.items():
        folder = tmp_path / name
        folder.mkdir()
        path = fx.write_zip(folder / Path(rel).name, m)
        if rel == BIGGAN:
            shutil.copy(require(CONTAINERS / "biggan_128_ch8" / "config.json"), folder / "config.json")
        _clean_failure(path)


@pytest.mark.parametrize("rel", BYTE_CASES)
def test_seeded_byte_flips(tmp_path, rel):
    """Flips in the structure (first 16 KiB, zip directory at the end) and anywhere. A flip inside tensor
    data may give a readable file; every failure must still be one clean line."""
    raw = _golden_bytes(rel)
    rng = random.Random(f"flip:{rel}")
    for i in range(10):
        buf = bytearray(raw)
        region = (0, min(len(raw), 16384)) if i < 5 else (max(0, len(raw) - 4096), len(raw)) if i < 7 \
            else (0, len(raw))
        for _ in range(1 + i % 3):
            pos = rng.randrange(*region)
            buf[pos] ^= 1 << rng.randrange(8)
        _clean_failure(_place(tmp_path, rel, bytes(buf), f"flip{i}"), must_fail=False)


# ----------------------------------------------------------------------------------------------------------
# Structural edits of NVlabs pickles


def _sg2() -> dict:
    return copy.deepcopy(_loaded_nvlabs(SG2))


def _sg3() -> dict:
    return copy.deepcopy(_loaded_nvlabs(SG3))


def _mods(obj: PersistentObj) -> dict:
    return obj.state["_modules"]


def _nvlabs_edits() -> dict[str, Callable[[dict], Any]]:
    """Each edit changes a loaded snapshot in place (named after what it breaks)."""

    def empty_modules(s):
        _mods(s["G_ema"]).clear()  # the persistence record of a Generator without synthesis/mapping

    def no_synthesis(s):
        del _mods(s["G_ema"])["synthesis"]

    def no_mapping(s):
        del _mods(s["G_ema"])["mapping"]

    def synthesis_is_dict(s):
        _mods(s["G_ema"])["synthesis"] = {"b4": 1}

    def synthesis_is_none(s):
        _mods(s["G_ema"])["synthesis"] = None

    def no_blocks(s):
        _mods(s["G_ema"].synthesis).clear()

    def block_badly_named(s):
        blocks = _mods(s["G_ema"].synthesis)
        blocks["bx"] = blocks.pop("b4")

    def block_is_junk(s):
        _mods(s["G_ema"].synthesis)["b4"] = "junk"

    def no_conv1(s):
        del _mods(s["G_ema"].synthesis.b4)["conv1"]

    def no_architecture(s):
        del s["G_ema"].synthesis.b4.state["architecture"]

    def conv_clamp_junk(s):
        s["G_ema"].synthesis.b4.conv1.state["conv_clamp"] = "high"

    def no_g_ema(s):
        del s["G_ema"]

    def g_ema_is_dict(s):
        s["G_ema"] = {"mapping": 1}

    def g_ema_is_list(s):
        s["G_ema"] = [1, 2, 3]

    def init_kwargs_missing_key(s):
        del s["G_ema"].state["_init_kwargs"]["z_dim"]

    def init_kwargs_string(s):
        s["G_ema"].state["_init_kwargs"] = "junk"

    def init_kwargs_list(s):
        s["G_ema"].state["_init_kwargs"] = [1, 2]

    def init_args_int(s):
        s["G_ema"].state["_init_args"] = 5

    def resolution_string(s):
        s["G_ema"].state["_init_kwargs"]["img_resolution"] = "abc"

    def resolution_huge(s):
        s["G_ema"].state["_init_kwargs"]["img_resolution"] = 1 << 62

    def resolution_odd(s):
        s["G_ema"].state["_init_kwargs"]["img_resolution"] = 33

    def z_dim_negative(s):
        s["G_ema"].state["_init_kwargs"]["z_dim"] = -5

    def z_dim_float(s):
        s["G_ema"].state["_init_kwargs"]["z_dim"] = 64.5

    def channel_base_zero(s):
        s["G_ema"].state["_init_kwargs"]["synthesis_kwargs"]["channel_base"] = 0

    def channel_base_none(s):
        s["G_ema"].state["_init_kwargs"]["synthesis_kwargs"]["channel_base"] = None

    def synthesis_kwargs_list(s):
        s["G_ema"].state["_init_kwargs"]["synthesis_kwargs"] = [1, 2]

    def mapping_kwargs_string(s):
        s["G_ema"].state["_init_kwargs"]["mapping_kwargs"] = "eight"

    def num_layers_junk(s):
        s["G_ema"].state["_init_kwargs"]["mapping_kwargs"]["num_layers"] = [8]

    def parameters_list(s):
        s["G_ema"].mapping.fc0.state["_parameters"] = [1, 2]

    def modules_list(s):
        s["G_ema"].state["_modules"] = ["mapping", "synthesis"]

    def buffers_string(s):
        s["G_ema"].mapping.state["_buffers"] = "w_avg"

    def parameter_name_int(s):
        s["G_ema"].mapping.fc0.state["_parameters"][5] = np.zeros(2, np.float32)

    def non_persistent_set_int(s):
        s["G_ema"].mapping.state["_non_persistent_buffers_set"] = 3

    def weight_is_string(s):
        s["G_ema"].mapping.fc0.state["_parameters"]["weight"] = "junk"

    def weight_is_int(s):
        s["G_ema"].mapping.fc0.state["_parameters"]["weight"] = 7

    def weight_is_dict(s):
        s["G_ema"].mapping.fc0.state["_parameters"]["weight"] = {"a": 1}

    def weight_dropped(s):
        del s["G_ema"].mapping.fc0.state["_parameters"]["weight"]

    def w_avg_dropped(s):
        del s["G_ema"].mapping.state["_buffers"]["w_avg"]

    def noise_const_dropped(s):
        del s["G_ema"].synthesis.b8.conv0.state["_buffers"]["noise_const"]

    def weight_transposed(s):
        p = s["G_ema"].synthesis.b32.torgb.state["_parameters"]
        p["weight"] = np.ascontiguousarray(p["weight"].transpose(1, 0, 2, 3))

    def weight_flat(s):
        p = s["G_ema"].mapping.fc0.state["_parameters"]
        p["weight"] = p["weight"].reshape(-1)

    def const_extra_dim(s):
        p = s["G_ema"].synthesis.b4.state["_parameters"]
        p["const"] = p["const"][None]

    def bias_scalar(s):
        s["G_ema"].mapping.fc0.state["_parameters"]["bias"] = np.float32(1.0)

    def weight_complex(s):
        p = s["G_ema"].mapping.fc0.state["_parameters"]
        p["weight"] = p["weight"].astype(np.complex64)

    def weight_bool(s):
        p = s["G_ema"].mapping.fc0.state["_parameters"]
        p["weight"] = p["weight"] > 0

    def weight_int64(s):
        p = s["G_ema"].mapping.fc0.state["_parameters"]
        p["weight"] = p["weight"].astype(np.int64)

    def filter_wrong(s):
        b = s["G_ema"].synthesis.b8.conv0.state["_buffers"]
        b["resample_filter"] = b["resample_filter"] * 2

    def extra_junk_module(s):
        _mods(s["G_ema"].synthesis)["b4"].state["_modules"]["junk"] = {"x": (1, 2)}

    def deep_nesting_kwargs(s):
        s["G_ema"].state["_init_kwargs"]["deep"] = _deep_list(50_000)

    def junk_objects_in_state(s):
        st = s["G_ema"].synthesis.b4.state
        st.update(architecture=complex(1, 2), in_channels=slice(1, 2), resolution=frozenset({1}))

    def self_reference(s):
        kw = s["G_ema"].state["_init_kwargs"]
        kw["synthesis_kwargs"]["self"] = kw

    def class_name_other(s):
        s["G_ema"].class_name = "Discriminator"
        _mods(s["G_ema"]).clear()

    return {k: v for k, v in locals().items() if callable(v)}


NVLABS_EDITS = _nvlabs_edits()


@pytest.mark.parametrize("edit", list(NVLABS_EDITS))
def test_nvlabs_structural_edits(tmp_path, edit):
    snapshot = _sg2()
    NVLABS_EDITS[edit](snapshot)
    path = write_nvlabs(tmp_path / f"{edit}.pkl", snapshot)
    msg = _clean_failure(path)
    if edit == "empty_modules":  # the reported KeyError: 'synthesis'
        assert "synthesis" in msg, msg


def _sg3_edits() -> dict[str, Callable[[dict], Any]]:
    def empty_modules(s):
        _mods(s["G_ema"]).clear()

    def no_input(s):
        del _mods(s["G_ema"].synthesis)["input"]

    def no_freqs(s):
        del s["G_ema"].synthesis.input.state["_buffers"]["freqs"]

    def layer_dropped(s):
        layers = _mods(s["G_ema"].synthesis)
        del layers[next(k for k in layers if k.startswith("L1_"))]

    def channel_base_string(s):
        s["G_ema"].state["_init_kwargs"]["channel_base"] = "wide"

    def conv_kernel_huge(s):
        s["G_ema"].state["_init_kwargs"]["conv_kernel"] = 1 << 40

    def resolution_huge(s):
        s["G_ema"].state["_init_kwargs"]["img_resolution"] = 1 << 30

    def magnitude_ema_shape(s):
        layer = s["G_ema"].synthesis.L0_36_64
        layer.state["_buffers"]["magnitude_ema"] = np.ones(3, np.float32)

    def up_filter_wrong(s):
        layer = next(m for _, m in s["G_ema"].named_modules() if "up_filter" in (m.state.get("_buffers") or {}))
        layer.state["_buffers"]["up_filter"] = layer.state["_buffers"]["up_filter"][:-1]

    return {k: v for k, v in locals().items() if callable(v)}


SG3_EDITS = _sg3_edits()


@pytest.mark.parametrize("edit", list(SG3_EDITS))
def test_sg3_structural_edits(tmp_path, edit):
    snapshot = _sg3()
    SG3_EDITS[edit](snapshot)
    _clean_failure(write_nvlabs(tmp_path / f"sg3_{edit}.pkl", snapshot))


# ----------------------------------------------------------------------------------------------------------
# Huge declared sizes and malformed tensor records (refused before allocating)


def _nvlabs_with_tensor(t: Tensor) -> dict:
    s = _sg2()
    s["G_ema"].mapping.fc0.state["_parameters"]["weight"] = t
    return s


def _huge_tensor_variants() -> dict[str, Tensor]:
    w = np.ones((4, 4), np.float32)
    return {
        "count_huge": Tensor(w, count=1 << 60),  # storage record claims 2**60 elements
        "count_negative": Tensor(w, count=-1),
        "count_short": Tensor(w, count=w.size + 1),
        "size_huge": Tensor(w, size=(1 << 31, 1 << 31), stride=(1, 1)),
        "size_huge_zero_stride": Tensor(w, size=(1 << 30, 1 << 30), stride=(0, 0)),
        "size_negative": Tensor(w, size=(-4, 4)),
        "size_junk": Tensor(w, size=("a", 4)),
        "stride_mismatch": Tensor(w, size=(4, 4), stride=(4,)),
        "offset_past_end": Tensor(w, offset=1 << 40),
        "offset_negative": Tensor(w, offset=-3),
        "storage_unknown": Tensor(w, storage="QuantizedStorage"),
        "storage_complex": Tensor(w.astype(np.complex64)),
        "storage_bool": Tensor(w > 0),
    }


HUGE = _huge_tensor_variants()


@pytest.mark.parametrize("variant", list(HUGE))
def test_nvlabs_tensor_records(tmp_path, variant):
    path = write_nvlabs(tmp_path / f"t_{variant}.pkl", _nvlabs_with_tensor(HUGE[variant]))
    _clean_failure(path)


@pytest.mark.parametrize("variant", list(HUGE))
@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy], ids=["zip", "legacy"])
def test_torch_tensor_records(tmp_path, variant, writer):
    obj = copy.deepcopy(_loaded_torch(ROS))
    obj["g_ema"]["style.1.weight"] = HUGE[variant]
    _clean_failure(writer(tmp_path / f"t_{variant}.pt", obj))


def test_zip_numel_huge_and_member_bomb(tmp_path):
    obj = copy.deepcopy(_loaded_torch(ROS))
    obj["g_ema"]["style.1.weight"] = Tensor(obj["g_ema"]["style.1.weight"], numel=1 << 61)
    _clean_failure(write_torch_zip(tmp_path / "numel.pt", obj))
    # a deflated storage member that would expand to 256 MiB (from ~250 KiB on disk) if read whole
    members = fx.zip_members(require(CONTAINERS / ROS))
    key = next(k for k in members if k.endswith("/data/0"))
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if name != key:
                zf.writestr(name, data)
        with zf.open(key, "w", force_zip64=True) as f:
            chunk = members[key] + bytes((1 << 20) - len(members[key]) % (1 << 20))
            f.write(chunk)
            zero = bytes(1 << 20)
            for _ in range(255):
                f.write(zero)
    assert path.stat().st_size < 4 << 20
    tracemalloc.start()
    try:
        _clean_failure(path, load_torch, must_fail=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"reading a storage member allocated {peak >> 20} MiB"


def test_numpy_array_record_with_huge_shape(tmp_path):
    """SG3 keeps numpy arrays as attributes (numpy's own reduce: _reconstruct + BUILD with the raw bytes): a
    record declaring a 2**40-element shape over 16 bytes is refused before anything that size is allocated."""
    ops = fx.Ops
    dtype = ops.call(ops.glob("numpy", "dtype"), ops.s("i8"), b"\x89", b"\x88")  # numpy.dtype('i8', False, True)
    raw = b"B" + (16).to_bytes(4, "little") + bytes(16)  # BINBYTES
    build = ops.tup(ops.i(1), ops.ints(1 << 20, 1 << 20), dtype, b"\x89", raw)  # (version, shape, dtype, F?, data)
    array = ops.call(ops.glob("numpy._core.multiarray", "_reconstruct"), ops.glob("numpy", "ndarray"), ops.ints(0),
                     b"C\x01b") + build + b"b"  # SHORT_BINBYTES b'b', then BUILD
    path = tmp_path / "np.pkl"
    path.write_bytes(ops.end(b"}" + ops.s("G_ema") + array + b"s"))  # {'G_ema': array}
    _clean_failure(path)
    # a well-formed numpy attribute of an unexpected shape is data the converter does not use: accepted
    s = _sg3()
    s["G_ema"].synthesis.L0_36_64.state["in_size"] = np.zeros((3, 3), np.int64)
    _clean_failure(write_nvlabs(tmp_path / "attr.pkl", s), must_fail=False)


# ----------------------------------------------------------------------------------------------------------
# torch.save containers: rosinality, BigGAN, e4e/pSp


def _ros_edits() -> dict[str, Callable[[dict], Any]]:
    def no_g_ema(o):
        del o["g_ema"]

    def g_ema_list(o):
        o["g_ema"] = list(o["g_ema"].values())

    def g_ema_empty(o):
        o["g_ema"] = {}

    def key_dropped(o):
        del o["g_ema"]["conv1.conv.weight"]

    def key_extra(o):
        o["g_ema"]["junk.weight"] = np.zeros(3, np.float32)

    def key_not_str(o):
        o["g_ema"][7] = np.zeros(3, np.float32)

    def value_string(o):
        o["g_ema"]["conv1.conv.weight"] = "junk"

    def value_none(o):
        o["g_ema"]["conv1.conv.weight"] = None

    def wrong_shape(o):
        o["g_ema"]["conv1.conv.weight"] = o["g_ema"]["conv1.conv.weight"][0]

    def wrong_shape_mapping(o):
        o["g_ema"]["style.1.weight"] = o["g_ema"]["style.1.weight"][:, :7]

    def wrong_dtype_complex(o):
        o["g_ema"]["style.1.weight"] = o["g_ema"]["style.1.weight"].astype(np.complex64)

    def wrong_dtype_int(o):
        o["g_ema"]["style.1.weight"] = o["g_ema"]["style.1.weight"].astype(np.int32)

    def mapping_numbering(o):
        o["g_ema"]["style.9.weight"] = o["g_ema"].pop("style.1.weight")

    def mapping_name_junk(o):
        o["g_ema"]["style.x.weight"] = o["g_ema"].pop("style.1.weight")

    def latent_avg_string(o):
        o["latent_avg"] = "mean"

    def latent_avg_shape(o):
        o["latent_avg"] = np.zeros((3, 3), np.float32)

    def args_string(o):
        o["args"] = "size=64"

    def args_list(o):
        o["args"] = [64, 128]

    def args_size_junk(o):
        o["args"] = ArgsNamespace(size="big", latent=128, n_mlp=8, channel_multiplier=1)

    def args_size_huge(o):
        o["args"] = ArgsNamespace(size=1 << 40, latent=128, n_mlp=8, channel_multiplier=1)

    def args_arch_junk(o):
        o["args"] = ArgsNamespace(arch=["swagan"])

    def top_level_list(o):
        o.clear()
        o["x"] = [1]

    def deep_nesting(o):
        o["g_ema"]["deep"] = _deep_list(50_000)

    return {k: v for k, v in locals().items() if callable(v)}


ROS_EDITS = _ros_edits()


@pytest.mark.parametrize("edit", list(ROS_EDITS))
def test_rosinality_structural_edits(tmp_path, edit):
    obj = copy.deepcopy(_loaded_torch(ROS))
    ROS_EDITS[edit](obj)
    _clean_failure(write_torch_zip(tmp_path / f"ros_{edit}.pt", obj))


def _biggan_dir(tmp_path: Path, name: str, state: Any, config: Any = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    cfg = json.loads(require(CONTAINERS / "biggan_128_ch8" / "config.json").read_text()) if config is None \
        else config
    (folder / "config.json").write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
    write_torch_legacy(folder / "pytorch_model.bin", state)
    return folder / "pytorch_model.bin"


def _biggan_edits() -> dict[str, tuple[Callable[[dict], Any] | None, Callable[[dict], Any] | None]]:
    def drop(sd):
        del sd["generator.gen_z.weight_orig"]

    def drop_u(sd):
        del sd[next(k for k in sd if k.endswith("weight_u"))]

    def shape(sd):
        k = next(k for k in sd if k.endswith("weight_orig"))
        sd[k] = sd[k].reshape(-1)

    def u_zero(sd):
        k = next(k for k in sd if k.endswith("weight_u"))
        sd[k] = np.zeros_like(sd[k])

    def value_junk(sd):
        sd["generator.gen_z.weight_orig"] = "junk"

    def non_str_key(sd):
        sd[5] = np.zeros(1, np.float32)

    def cfg_missing(cfg):
        del cfg["layers"]

    def cfg_layers_junk(cfg):
        cfg["layers"] = "many"

    def cfg_layers_rows(cfg):
        cfg["layers"] = [[True, 1], [2]]

    def cfg_width_string(cfg):
        cfg["channel_width"] = "wide"

    def cfg_width_huge(cfg):
        cfg["channel_width"] = 1 << 40

    def cfg_z_dim_huge(cfg):
        cfg["z_dim"] = 1 << 50

    def cfg_attention_junk(cfg):
        cfg["attention_layer_position"] = "middle"

    def cfg_eps_string(cfg):
        cfg["eps"] = "tiny"

    def cfg_top_list(cfg):
        return [cfg]

    sd_edits = [drop, drop_u, shape, u_zero, value_junk, non_str_key]
    cfg_edits = [cfg_missing, cfg_layers_junk, cfg_layers_rows, cfg_width_string, cfg_width_huge, cfg_z_dim_huge,
                 cfg_attention_junk, cfg_eps_string, cfg_top_list]
    return {**{f.__name__: (f, None) for f in sd_edits}, **{f.__name__: (None, f) for f in cfg_edits}}


BIGGAN_EDITS = _biggan_edits()


@pytest.mark.parametrize("edit", list(BIGGAN_EDITS))
def test_biggan_structural_edits(tmp_path, edit):
    sd_edit, cfg_edit = BIGGAN_EDITS[edit]
    sd = dict(_loaded_torch(BIGGAN_LEGACY))
    cfg = json.loads(require(CONTAINERS / "biggan_128_ch8" / "config.json").read_text())
    if sd_edit:
        sd_edit(sd)
    if cfg_edit:
        cfg = cfg_edit(cfg) or cfg
    path = _biggan_dir(tmp_path, edit, sd, cfg)
    _clean_failure(path, names=("config.json",))
    _clean_failure(path.parent, names=("config.json",))  # the folder form reads the same files


def test_biggan_config_not_json(tmp_path):
    path = _biggan_dir(tmp_path, "nojson", dict(_loaded_torch(BIGGAN_LEGACY)), "{not json")
    _clean_failure(path, names=("config.json",))


def _encoder_checkpoint() -> dict:
    from jaxinv.models import encoders as enc

    cfg = enc.Config(encoder_type="BackboneEncoderUsingLastLayerIntoW", family="e4e", mode="ir")
    names = list(enc.state_dict_shapes(cfg))[:4]
    sd = {f"encoder.{k}": np.zeros(enc.state_dict_shapes(cfg)[k], np.float32) for k in names}
    sd["decoder.style.1.weight"] = np.zeros((4, 4), np.float32)
    return {"state_dict": sd, "opts": {"encoder_type": "SingleStyleCodeEncoder", "stylegan_size": 64},
            "latent_avg": np.zeros((10, 512), np.float32)}


ENCODER_EDITS: dict[str, Callable[[dict], Any]] = {
    "partial_weights": lambda o: None,
    "opts_string": lambda o: o.update(opts="junk"),
    "opts_list": lambda o: o.update(opts=[1, 2]),
    "opts_missing": lambda o: o.pop("opts"),
    "size_junk": lambda o: o["opts"].update(stylegan_size="big"),
    "size_huge": lambda o: o["opts"].update(stylegan_size=1 << 40),
    "n_styles_junk": lambda o: o["opts"].update(n_styles="many"),
    "encoder_type_junk": lambda o: o["opts"].update(encoder_type=["x"]),
    "latent_avg_string": lambda o: o.update(latent_avg="mean"),
    "latent_avg_shape": lambda o: o.update(latent_avg=np.zeros((3, 5), np.float32)),
    "value_junk": lambda o: o["state_dict"].update({"encoder.input_layer.0.weight": "junk"}),
    "state_dict_list": lambda o: o.update(state_dict=[1, 2]),
}


@pytest.mark.parametrize("edit", list(ENCODER_EDITS))
def test_encoder_checkpoint_edits(tmp_path, edit):
    obj = _encoder_checkpoint()
    ENCODER_EDITS[edit](obj)
    _clean_failure(write_torch_zip(tmp_path / f"e4e_{edit}.pt", obj))


# ----------------------------------------------------------------------------------------------------------
# Converted model directories (jaxinv.json + params/): a damaged description is one line too

CONVERTED_META = {
    "json_list": "[1, 2]",
    "no_family": json.dumps({"format_version": 1, "config": {}}),
    "unknown_family": json.dumps({"format_version": 1, "family": "vqgan", "config": {}}),
    "config_list": json.dumps({"format_version": 1, "family": "rosinality", "config": [1]}),
    "config_junk_key": json.dumps({"format_version": 1, "family": "rosinality", "config": {"nope": 1}}),
    "no_params": None,  # a valid description written by save(), params/ removed
}


@pytest.mark.parametrize("case", list(CONVERTED_META))
def test_converted_directory_damaged(tmp_path, case):
    from jaxinv.checkpoint import META_NAME, save

    folder = tmp_path / case
    if CONVERTED_META[case] is None:
        save(jaxinv.load(require(CONTAINERS / ROS)), folder)
        shutil.rmtree(folder / "params")
    else:
        folder.mkdir()
        (folder / META_NAME).write_text(CONVERTED_META[case])
    _clean_failure(folder, names=(META_NAME, "params"))


# ----------------------------------------------------------------------------------------------------------
# TF-era pickles (read in tests/test_tf_pickles.py): a Gs of an unknown build function is one line


@pytest.mark.parametrize("rel", TF_ERA)
def test_tf_era_pickle_of_an_unknown_generator_refused(tmp_path, rel):
    raw = _golden_bytes(rel)
    gs_func = {"pggan_r32.pkl": b"G_paper", "stylegan1_r32.pkl": b"G_style", "stylegan2tf_r32_skip.pkl": b"G_main"}
    old = gs_func[rel]
    new = b"G_" + b"x" * (len(old) - 2)  # same length: the pickle's framing stays valid
    assert raw.count(b"\x8c" + bytes([len(old)]) + old) >= 1
    path = _place(tmp_path, rel, raw.replace(b"\x8c" + bytes([len(old)]) + old, b"\x8c" + bytes([len(new)]) + new),
                  "renamed")
    msg = _clean_failure(path)
    assert "TensorFlow-era pickle whose Gs is built by" in msg and "not a known generator" in msg, msg


# ----------------------------------------------------------------------------------------------------------
# The command line: one stderr line, non-zero status, no traceback, nothing executed


def _run_cli(src: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weights_convert", str(src), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_one_line_errors(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    snapshot = _sg2()
    # a persistence record whose state would run os.system when a real unpickler reconstructs it
    snapshot["G_ema"].state["hook"] = _Call(Glob("os", "system"), (f"touch {marker}",))
    write_nvlabs(evil, snapshot)
    empty = _sg2()
    NVLABS_EDITS["empty_modules"](empty)
    raw = _golden_bytes(BIGGAN)
    cases = [
        write_nvlabs(tmp_path / "empty_modules.pkl", empty),
        _place(tmp_path, BIGGAN, raw[: len(raw) // 2], "cut"),
        write_torch_legacy(tmp_path / "huge.pt", {"g_ema": {"style.1.weight": HUGE["count_huge"]}}),
        _place(tmp_path, "stylegan1_r32.pkl", _golden_bytes("stylegan1_r32.pkl")[:5000], "tf_cut"),
        evil,
    ]
    for src in cases:
        out = tmp_path / f"out_{src.stem}"
        res = _run_cli(src, out)
        lines = res.stderr.strip().splitlines()
        assert res.returncode != 0, (src.name, res.stdout, res.stderr)
        assert len(lines) == 1 and "Traceback" not in res.stderr, (src.name, res.stderr)
        assert src.name in lines[0], lines[0]
        assert not out.exists(), f"{src.name}: output folder written"
    assert not marker.exists(), "pickled code was executed"
