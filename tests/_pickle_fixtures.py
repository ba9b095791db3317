"""Hand-built pickle streams and containers for tests of weights_convert.torch_formats.

The malicious streams are assembled opcode by opcode (the way an attacker would write them), so they can
name any global (e.g. `os.system`) without this module ever holding a reference to it.
"""

from __future__ import annotations

import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _unicode_op(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _bytes_op(raw: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(raw)) + raw  # BINBYTES (protocol >= 3; fine for our reader)


def global_op(module: str, name: str, protocol: int) -> bytes:
    if protocol >= 4:
        return _unicode_op(module) + _unicode_op(name) + b"\x93"  # STACK_GLOBAL
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def call_pickle(module: str, name: str, arg: str | bytes, protocol: int = 2) -> bytes:
    """A complete pickle whose only action is `module.name(arg)`."""
    arg_op = _unicode_op(arg) if isinstance(arg, str) else _bytes_op(arg)
    return b"\x80" + bytes([protocol]) + global_op(module, name, protocol) + arg_op + b"\x85R."  # TUPLE1 REDUCE STOP


def legacy_stream(object_pickle: bytes, keys: list[str] = (), storages: bytes = b"") -> bytes:
    """A legacy (non-zip) torch.save stream around an already pickled object."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return (pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps(sys_info, protocol=2) + object_pickle + pickle.dumps(list(keys), protocol=2) + storages)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


# ----------------------------------------------------------------------------------------------------------
# Stand-ins for the NVlabs helper modules, so that plain `pickle.dump` writes the same GLOBAL names as the
# official code (torch_utils.persistence._reconstruct_persistent_obj, dnnlib.util.EasyDict).


def install_fake_nvlabs_modules(monkeypatch) -> types.SimpleNamespace:
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called (the reader uses its own)
        raise AssertionError("must not be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict

    class Record:
        """Pickles exactly like a persistent class instance: REDUCE(_reconstruct_persistent_obj, (meta,))."""

        def __init__(self, meta):
            self.meta = meta

        def __reduce__(self):
            return _reconstruct_persistent_obj, (self.meta,)

    for name, mod in (("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                      ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)):
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(EasyDict=EasyDict, Record=Record)


def as_persistent_record(module, fakes, init_kwargs: dict) -> object:
    """Wrap a real torch.nn.Module tree the way torch_utils.persistence pickles it (module_src inert)."""
    state = dict(module.__getstate__())
    state["_modules"] = {name: (None if child is None else as_persistent_record(child, fakes, {}))
                         for name, child in module._modules.items()}
    state["_init_args"] = ()
    state["_init_kwargs"] = init_kwargs
    meta = dict(type="class", version=6, module_src="raise SystemExit('module_src must never run')\n",
                class_name=type(module).__name__, state=state)
    return fakes.Record(meta)


# ----------------------------------------------------------------------------------------------------------
# A tiny opcode builder for hand-written protocol-2 streams (old layouts torch no longer writes).


class Ops:
    """Protocol-2 opcode snippets; concatenate them and finish with `Ops.end`."""

    start = b"\x80\x02"

    @staticmethod
    def glob(module: str, name: str) -> bytes:
        return global_op(module, name, 2)

    @staticmethod
    def s(text: str) -> bytes:
        return _unicode_op(text)

    @staticmethod
    def i(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)  # BININT

    @staticmethod
    def tup(*parts: bytes) -> bytes:
        return b"(" + b"".join(parts) + b"t"  # MARK ... TUPLE

    @staticmethod
    def ints(*ns: int) -> bytes:
        return Ops.tup(*(Ops.i(n) for n in ns))

    @staticmethod
    def pid(tuple_ops: bytes) -> bytes:
        return tuple_ops + b"Q"  # BINPERSID

    @staticmethod
    def call(fn_ops: bytes, *args: bytes) -> bytes:
        return fn_ops + Ops.tup(*args) + b"R"  # REDUCE

    @staticmethod
    def end(body: bytes) -> bytes:
        return Ops.start + body + b"."
