"""weights_convert.torch_formats: torch-free restricted readers on the official golden containers, on files
written by real torch.save / pickle.dump, and on malicious, truncated and non-checkpoint inputs."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:  # tests/ as a package (tests/__init__.py) or as a plain folder that pytest put on sys.path
    from tests import _pickle_fixtures as fx
    from tests.conftest import GOLDEN, ROOT, require
except ImportError:
    import _pickle_fixtures as fx
    from conftest import GOLDEN, ROOT, require

from jaxinv.errors import CheckpointError
from weights_convert.torch_formats import (
    ArgsNamespace,
    PersistentObj,
    detect_format,
    load_nvlabs_pickle,
    load_torch,
    sha256_file,
)

Ops, call_pickle, legacy_stream, write_zip, zip_members = (
    fx.Ops, fx.call_pickle, fx.legacy_stream, fx.write_zip, fx.zip_members)

CONTAINERS = GOLDEN / "containers"
NVLABS_CASES = ["sg2ada_r32_cond10_skip", "sg2ada_r32_resnet_clamp", "sg2ada_r64_skip", "sg3r_r64", "sg3t_r64",
                "sg3repo_stylegan2_r64_skip"]
# D parameter counts and augment_pipe presence as documented in containers/README.md
D_PARAMS = {"sg2ada_r32_cond10_skip": 82384, "sg2ada_r32_resnet_clamp": 72561, "sg2ada_r64_skip": 74409,
            "sg3r_r64": 74409, "sg3t_r64": 74409, "sg3repo_stylegan2_r64_skip": 74409}
WITH_AUGMENT = {"sg2ada_r32_cond10_skip", "sg3t_r64"}


@functools.cache
def _nvlabs(case: str) -> dict:
    return load_nvlabs_pickle(require(CONTAINERS / f"{case}.pkl"))


@functools.cache
def _torch_file(rel: str):
    return load_torch(require(CONTAINERS / rel))


def _assert_same_arrays(got: dict, ref, what: str) -> None:
    ref_keys = list(ref.files) if hasattr(ref, "files") else list(ref)
    assert list(got) == ref_keys, f"{what}: names/order differ: missing {sorted(set(ref_keys) - set(got))}, " \
                                  f"unexpected {sorted(set(got) - set(ref_keys))}"
    for k in ref_keys:
        a, b = got[k], ref[k]
        assert isinstance(a, np.ndarray), f"{what}:{k} is {type(a).__name__}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}:{k} {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        ra, rb = a.tobytes(), np.ascontiguousarray(b).tobytes()
        diff = sum(x != y for x, y in zip(ra, rb, strict=True)) if ra != rb else 0
        assert diff == 0, f"{what}:{k} not bit-identical ({diff} differing bytes)"


def _expected_init_kwargs(case: str) -> dict:
    if case == "sg3repo_stylegan2_r64_skip":
        # the sg2ada_r64_skip weights in the stylegan3 repo's networks_stylegan2 (flat kwargs), plus the
        # fused_modconv_default that stylegan3 train.py adds (containers/README.md)
        eq = json.loads(require(GOLDEN / "sg3repo_stylegan2_equivalence.json").read_text())
        return {**eq["init_kwargs_stylegan3_repo"], "fused_modconv_default": "inference_only"}
    return json.loads(require(GOLDEN / f"{case}.init_kwargs.json").read_text())["init_kwargs"]


def _weights_case(case: str) -> str:
    return "sg2ada_r64_skip" if case == "sg3repo_stylegan2_r64_skip" else case


# ----------------------------------------------------------------------------------------------------------
# Official NVlabs containers


@pytest.mark.parametrize("case", NVLABS_CASES)
def test_nvlabs_container_state_dict_bit_identical(case):
    data = _nvlabs(case)
    ref = np.load(require(GOLDEN / f"{_weights_case(case)}.weights.npz"))
    assert {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"} <= set(data)
    for net in ("G_ema", "G"):
        assert isinstance(data[net], PersistentObj) and data[net].class_name == "Generator"
        _assert_same_arrays(data[net].state_dict(), ref, f"{case}.{net}")


@pytest.mark.parametrize("case", NVLABS_CASES)
def test_nvlabs_container_init_kwargs_and_metadata(case):
    data = _nvlabs(case)
    G = data["G_ema"]
    kwargs = G.init_kwargs
    assert kwargs == _expected_init_kwargs(case)
    # EasyDicts come back as plain dicts, at every level
    assert all(type(v) is dict for v in kwargs.values() if isinstance(v, dict))
    assert G.init_args == ()
    assert G.version == 6 and isinstance(G.module_src, str)
    clone = copy.deepcopy(G.mapping)  # loaded objects are plain data: copyable
    assert clone.class_name == "MappingNetwork" and list(clone.state_dict()) == list(G.mapping.state_dict())
    ts = data["training_set_kwargs"]
    assert type(ts) is dict and ts["resolution"] == kwargs["img_resolution"]
    assert ts["use_labels"] == (kwargs["c_dim"] > 0)


@pytest.mark.parametrize("case", NVLABS_CASES)
def test_nvlabs_container_modules_and_attributes(case):
    data = _nvlabs(case)
    G, D = data["G_ema"], data["D"]
    kwargs = G.init_kwargs
    flat = kwargs.get("synthesis_kwargs", kwargs)
    # plain attributes, numpy scalars and child modules are reachable
    fc0 = G.mapping.fc0
    assert fc0 is G.module("mapping.fc0") and fc0.class_name == "FullyConnectedLayer"
    assert isinstance(fc0.weight_gain, np.float64)
    expected_gain = 0.01 / np.sqrt(fc0.weight.shape[1])  # official: lr_multiplier / sqrt(in_features)
    assert abs(float(fc0.weight_gain) - expected_gain) <= 1e-15, (float(fc0.weight_gain), expected_gain)
    layers = [m for _, m in G.named_modules() if m.class_name == "SynthesisLayer"]
    assert layers, "no SynthesisLayer found"
    assert all(m.attr("conv_clamp") == flat["conv_clamp"] for m in layers)
    assert G.attr("img_resolution") == kwargs["img_resolution"]
    assert G.attr("no_such_attribute", None) is None
    with pytest.raises(AttributeError):
        G.attr("no_such_attribute")
    # names of module paths combine into the state_dict names
    sd = G.state_dict()
    assert all(n.startswith(("mapping.", "synthesis.")) for n in sd)
    # D and augment_pipe
    n_d = sum(v.size for _, m in D.named_modules() for v in (m.state.get("_parameters") or {}).values()
              if v is not None)
    assert D.class_name == "Discriminator" and n_d == D_PARAMS[case]
    if case in WITH_AUGMENT:
        pipe = data["augment_pipe"]
        assert pipe.class_name == "AugmentPipe"
        sd = pipe.state_dict()
        assert list(sd) == ["p", "Hz_geom", "Hz_fbank"]
        assert sd["p"].shape == () and sd["p"] == np.float32(0.15)
        assert sd["Hz_geom"].shape == (12,) and sd["Hz_fbank"].shape == (4, 43)
    else:
        assert data["augment_pipe"] is None


def test_nvlabs_sg3_numpy_array_attributes():
    G = _nvlabs("sg3t_r64")["G_ema"]
    layer = next(m for _, m in G.named_modules() if m.class_name == "SynthesisLayer")
    for name in ("in_size", "out_size"):
        v = layer.attr(name)
        assert isinstance(v, np.ndarray) and v.shape == (2,) and v.dtype.kind == "i", (name, v)


# ----------------------------------------------------------------------------------------------------------
# Official torch.save containers


def test_rosinality_train_checkpoint():
    ckpt = _torch_file("rosinality_r64_cm1.train.pt")
    ref = np.load(require(GOLDEN / "rosinality_r64_cm1.weights.npz"))
    assert list(ckpt) == ["g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"]
    assert type(ckpt["g_ema"]) is dict  # OrderedDict -> dict
    _assert_same_arrays(ckpt["g_ema"], ref, "train.pt g_ema")
    _assert_same_arrays(ckpt["g"], ref, "train.pt g")
    assert sum(v.size for v in ckpt["d"].values()) == 77585 and len(ckpt["d"]) == 36
    args = ckpt["args"]
    assert isinstance(args, ArgsNamespace)
    expected_args = {"path": "datasets/rosinality_r64_cm1_lmdb", "arch": "stylegan2", "iter": 800000,
                     "batch": 16, "n_sample": 64, "size": 64, "r1": 10, "path_regularize": 2,
                     "path_batch_shrink": 2, "d_reg_every": 16, "g_reg_every": 4, "mixing": 0.9, "ckpt": None,
                     "lr": 0.002, "channel_multiplier": 1, "wandb": False, "local_rank": 0, "augment": False,
                     "augment_p": 0, "ada_target": 0.6, "ada_length": 500000, "ada_every": 256,
                     "distributed": False, "latent": 128, "n_mlp": 8, "start_iter": 0}
    assert vars(args) == expected_args
    assert args.size == 64 and args["n_mlp"] == 8 and "latent" in args and dict(args.items()) == expected_args
    opt = ckpt["g_optim"]
    assert len(opt["state"]) == 82 and len(ckpt["d_optim"]["state"]) == 28
    st0 = opt["state"][0]
    assert float(st0["step"]) == 1.0 and st0["exp_avg"].dtype == np.float32
    assert abs(opt["param_groups"][0]["lr"] - 0.002 * 4 / 5) < 1e-12
    assert ckpt["ada_aug_p"] == 0.0


def test_rosinality_converted_checkpoint():
    ckpt = _torch_file("rosinality_r64_cm1.converted.pt")
    assert list(ckpt) == ["g_ema", "latent_avg"]
    _assert_same_arrays(ckpt["g_ema"], np.load(require(GOLDEN / "rosinality_r64_cm1.weights.npz")), "g_ema")
    io = np.load(require(GOLDEN / "rosinality_r64_cm1.io.npz"))
    _assert_same_arrays({"latent_avg": ckpt["latent_avg"]}, {"latent_avg": io["latent_avg"]}, "latent_avg")


@pytest.mark.parametrize("name,kind", [("pytorch_model.bin", "torch_zip"),
                                       ("pytorch_model.legacy.bin", "torch_legacy")])
def test_biggan_state_dict(name, kind):
    path = require(CONTAINERS / "biggan_128_ch8" / name)
    assert detect_format(path) == kind
    sd = _torch_file(f"biggan_128_ch8/{name}")
    assert type(sd) is dict and len(sd) == 506
    _assert_same_arrays(sd, np.load(require(GOLDEN / "biggan_128_ch8.weights.npz")), name)


def test_detect_format_and_sha256_of_containers():
    readme = require(CONTAINERS / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|[^|]*\| (\d+) \| `([0-9a-f]{64})` \|$", readme, flags=re.M)
    assert len(rows) == 11, rows
    kinds = {".pkl": "nvlabs_pkl", ".pt": "torch_zip", ".json": None}
    for rel, size, digest in rows:
        path = require(CONTAINERS / rel)
        assert path.stat().st_size == int(size)
        assert sha256_file(path) == digest == hashlib.sha256(path.read_bytes()).hexdigest(), rel
        kind = kinds.get(path.suffix, "torch_zip" if rel.endswith("pytorch_model.bin") else "torch_legacy")
        if kind is None:
            with pytest.raises(CheckpointError, match=re.escape(str(path))):
                detect_format(path)
        else:
            assert detect_format(path) == kind, rel


def test_wrong_reader_is_refused():
    pkl, pt = require(CONTAINERS / "sg3t_r64.pkl"), require(CONTAINERS / "rosinality_r64_cm1.converted.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{pkl}: is a nvlabs_pkl file, not a torch.save")):
        load_torch(pkl)
    with pytest.raises(CheckpointError, match=re.escape(f"{pt}: is a torch_zip file, not an NVlabs")):
        load_nvlabs_pickle(pt)


# ----------------------------------------------------------------------------------------------------------
# Files written by real torch (test-only dependency)


def _torch_reference(t):
    import torch

    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy(), np.int16
    return t.numpy(), None


def _assert_matches_tensor(got, t, what):
    ref, view_as = _torch_reference(t)
    assert isinstance(got, np.ndarray), f"{what}: {type(got).__name__}"
    assert got.shape == tuple(t.shape), f"{what}: shape {got.shape} vs {tuple(t.shape)}"
    if view_as is not None:
        got = got.view(view_as)
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} vs {ref.dtype}"
    assert np.array_equal(got, ref), f"{what}: values differ"
    assert got.flags.c_contiguous and got.flags.writeable


def _tensor_zoo():
    import torch

    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    attr_tensor = torch.arange(3.0)
    attr_tensor.note = "python attribute -> _rebuild_from_type_v2"
    return {
        "f32": torch.randn(2, 3, 5, generator=g),
        "f16": torch.randn(3, 4, generator=g).half(),
        "f64": torch.randn(5, generator=g).double(),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "i64": torch.arange(-5, 7, dtype=torch.int64).view(3, 4),
        "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([[True, False, True], [False, False, True]]),
        "base": base,
        "transposed": base.t(),                  # non-contiguous view of the same storage
        "offset_view": base.view(-1)[5:17].view(3, 4),  # storage_offset 5
        "strided": base[1:, ::2],               # offset + step stride
        "scalar0d": torch.tensor(2.5, dtype=torch.float64),
        "scalar_in_storage": base[2, 3],        # 0-d view with an offset
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
        "attr_tensor": attr_tensor,
    }


def _check_zoo(got, zoo, where):
    for k, t in zoo.items():
        _assert_matches_tensor(got[k], t, f"{where}:{k}")


@pytest.mark.parametrize("zipfmt", [True, False], ids=["zip", "legacy"])
def test_torch_save_roundtrip(tmp_path, zipfmt):
    torch = pytest.importorskip("torch")
    import argparse
    from collections import OrderedDict

    zoo = _tensor_zoo()
    lin = torch.nn.Linear(3, 2)
    obj = {
        "zoo": zoo,
        "nested": {"list": [zoo["f16"], {"deep": zoo["i64"]}, 3, "s"], "tuple": (zoo["bool"], 1.5, None)},
        "sd": lin.state_dict(),                     # OrderedDict with _metadata
        "od": OrderedDict([("b", 1), ("a", 2)]),
        "args": argparse.Namespace(lr=0.1, name="x", layers=[1, 2]),
        "np_scalar": np.float32(1.25),
        "np_array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "sets": ({1, 2}, frozenset({"a"})),
        "raw": b"\x00\x01binary",
        "buf": bytearray(b"\xffab"),
        "device": torch.device("cpu"),
    }
    if zipfmt:
        # newer dtype: written as UntypedStorage + _rebuild_tensor_v3
        obj["u16"] = torch.tensor([0, 1, 40000, 65535], dtype=torch.int32).to(torch.uint16)
    path = tmp_path / ("m.pt" if zipfmt else "m_legacy.pt")
    torch.save(obj, path, _use_new_zipfile_serialization=zipfmt)
    assert detect_format(path) == ("torch_zip" if zipfmt else "torch_legacy")

    got = load_torch(path)
    _check_zoo(got["zoo"], zoo, path.name)
    _assert_matches_tensor(got["nested"]["list"][0], zoo["f16"], "nested list")
    _assert_matches_tensor(got["nested"]["list"][1]["deep"], zoo["i64"], "nested dict")
    assert got["nested"]["list"][2:] == [3, "s"]
    assert isinstance(got["nested"]["tuple"], tuple) and got["nested"]["tuple"][1:] == (1.5, None)
    assert type(got["sd"]) is dict and list(got["sd"]) == ["weight", "bias"]
    _assert_matches_tensor(got["sd"]["weight"], lin.weight, "Linear.weight")
    assert type(got["od"]) is dict and list(got["od"].items()) == [("b", 1), ("a", 2)]
    assert vars(got["args"]) == {"lr": 0.1, "name": "x", "layers": [1, 2]} and got["args"].lr == 0.1
    assert type(got["np_scalar"]) is np.float32 and got["np_scalar"] == np.float32(1.25)
    np.testing.assert_array_equal(got["np_array"], obj["np_array"])
    assert got["np_array"].dtype == np.int16
    assert got["sets"] == ({1, 2}, frozenset({"a"})) and got["raw"] == b"\x00\x01binary"
    assert type(got["buf"]) is bytearray and got["buf"] == bytearray(b"\xffab")
    assert got["device"] == "cpu"
    if zipfmt:
        _assert_matches_tensor(got["u16"], obj["u16"], "uint16")

    # a bare tensor and a bare state_dict as top-level objects
    torch.save(zoo["transposed"], tmp_path / "t.pt", _use_new_zipfile_serialization=zipfmt)
    _assert_matches_tensor(load_torch(tmp_path / "t.pt"), zoo["transposed"], "top-level tensor")


def test_torch_zip_root_folder_is_arbitrary(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.arange(10, dtype=torch.int64)
    torch.save({"t": t}, tmp_path / "orig.pt")
    members = zip_members(tmp_path / "orig.pt")
    renamed = {"archive/" + n.split("/", 1)[1]: data for n, data in members.items()}
    write_zip(tmp_path / "renamed.pt", renamed)
    _assert_matches_tensor(load_torch(tmp_path / "renamed.pt")["t"], t, "archive/ root")


def test_nvlabs_style_pickle_from_real_torch_modules(tmp_path, monkeypatch):
    """pickle.dump of persistence records wrapping real torch modules (as training_loop.py writes them):
    state_dict names/order/values must equal torch's own Module.state_dict()."""
    torch = pytest.importorskip("torch")
    fakes = fx.install_fake_nvlabs_modules(monkeypatch)
    g = torch.Generator().manual_seed(1)

    root = torch.nn.Module()
    root.register_buffer("w_avg", torch.randn(4, generator=g))
    root.register_parameter("unused", None)                       # None parameter: skipped
    root.body = torch.nn.Module()
    root.body.fc = torch.nn.Linear(3, 4, bias=False)              # bias None
    base = torch.randn(3, 5, generator=g)
    root.body.register_buffer("fp16_buf", torch.randn(2, 3, generator=g).half())
    root.body.register_buffer("ids", torch.arange(12, dtype=torch.int64).view(3, 4).t())
    root.body.register_buffer("mask", torch.tensor([True, False, True]))
    root.body.register_buffer("view_t", base.t())
    root.body.register_buffer("view_off", base.view(-1)[4:10])
    root.body.register_buffer("strength", torch.tensor(0.25))
    root.body.register_buffer("tmp", torch.ones(2), persistent=False)  # non-persistent: skipped
    root.body.register_buffer("gone", None)
    root.empty = None
    root.head = torch.nn.Conv2d(2, 3, 3)
    root.requires_grad_(False)
    root.body.weight_gain = np.float64(0.5) / np.sqrt(3.0)
    root.body.size = np.array([36, 36])
    root.body.kwargs = fakes.EasyDict(a=1, inner=fakes.EasyDict(b=2))

    init_kwargs = fakes.EasyDict(z_dim=4, mapping_kwargs=fakes.EasyDict(num_layers=2))
    snapshot = {"G_ema": fx.as_persistent_record(root, fakes, init_kwargs), "augment_pipe": None,
                "training_set_kwargs": {"resolution": 8}}
    path = tmp_path / "network-snapshot.pkl"
    for protocol in (2, 4):
        path.write_bytes(pickle.dumps(snapshot, protocol=protocol))
        assert detect_format(path) == "nvlabs_pkl"
        G = load_nvlabs_pickle(path)["G_ema"]
        ref = {k: v for k, v in root.state_dict().items()}
        sd = G.state_dict()
        assert list(sd) == list(ref), (list(sd), list(ref))
        for k, t in ref.items():
            _assert_matches_tensor(sd[k], t, f"protocol {protocol}:{k}")
        assert G.init_kwargs == {"z_dim": 4, "mapping_kwargs": {"num_layers": 2}}
        assert type(G.init_kwargs["mapping_kwargs"]) is dict
        body = G.body
        assert type(body.weight_gain) is np.float64 and body.weight_gain == root.body.weight_gain
        assert isinstance(body.size, np.ndarray) and body.size.tolist() == [36, 36]
        assert body.kwargs == {"a": 1, "inner": {"b": 2}} and type(body.kwargs["inner"]) is dict
        assert body.attr("tmp").tolist() == [1.0, 1.0]  # non-persistent buffer still reachable as attribute
        assert G.attr("empty") is None and G.module("body.fc").class_name == "Linear"


def test_nvlabs_pickle_with_numpy1_names(tmp_path, monkeypatch):
    """Pickles written with numpy < 2 (the published 2021 snapshots) say numpy.core.*."""
    fakes = fx.install_fake_nvlabs_modules(monkeypatch)
    state = {"_parameters": {}, "_buffers": {}, "_modules": {}, "gain": np.float64(0.125),
             "in_size": np.array([[1, 2], [3, 4]], dtype=np.int32), "_init_kwargs": {}, "_init_args": ()}
    rec = fakes.Record(dict(type="class", version=6, module_src="", class_name="Layer", state=state))
    raw = pickle.dumps({"G_ema": rec}, protocol=2)
    assert b"numpy._core" in raw
    path = tmp_path / "old_numpy.pkl"
    path.write_bytes(raw.replace(b"numpy._core", b"numpy.core"))  # protocol 2: names are newline-terminated
    G = load_nvlabs_pickle(path)["G_ema"]
    assert type(G.gain) is np.float64 and G.gain == 0.125
    np.testing.assert_array_equal(G.in_size, state["in_size"])
    assert G.in_size.dtype == np.int32


# ----------------------------------------------------------------------------------------------------------
# Malicious input: nothing may execute


DANGEROUS = [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
             ("subprocess", "check_call"), ("builtins", "getattr"), ("numpy", "load"),
             ("torch", "load"), ("torch_utils.persistence", "persistent_class")]


class _Evil:
    """Pickled by Python itself: __reduce__ -> (os.system, (cmd,)) (written as posix.system on Linux)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def _shell_cmd(marker: Path) -> str:
    return f"touch {marker}"


@pytest.mark.parametrize("module,name", DANGEROUS)
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_global_in_plain_pickle(tmp_path, module, name, protocol):
    marker = tmp_path / "pwned"
    arg = _shell_cmd(marker) if name == "system" else f"__import__('os').system('touch {marker}')"
    path = tmp_path / "evil.pkl"
    path.write_bytes(call_pickle(module, name, arg, protocol))
    with pytest.raises(CheckpointError) as err:
        load_nvlabs_pickle(path)
    msg = str(err.value)
    assert msg == f"{path}: pickle references non-allow-listed global '{module}.{name}'", msg
    assert not marker.exists()


def test_malicious_reduce_written_by_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(_shell_cmd(marker))}, protocol=4))
    with pytest.raises(CheckpointError, match=r"non-allow-listed global '(os|posix)\.system'"):
        load_nvlabs_pickle(path)
    assert not marker.exists()


def test_malicious_global_inside_torch_containers(tmp_path):
    marker = tmp_path / "pwned"
    evil = call_pickle("os", "system", _shell_cmd(marker), 2)
    # 1. torch zip with a malicious data.pkl
    zpath = write_zip(tmp_path / "evil.pt", {"evil/data.pkl": evil, "evil/version": b"3\n",
                                             "evil/byteorder": b"little"})
    with pytest.raises(CheckpointError, match=re.escape(f"{zpath}: pickle references non-allow-listed global "
                                                        "'os.system'")):
        load_torch(zpath)
    # 2. a real container whose data.pkl was swapped
    members = zip_members(require(CONTAINERS / "rosinality_r64_cm1.converted.pt"))
    members["rosinality_r64_cm1.converted/data.pkl"] = evil
    swapped = write_zip(tmp_path / "swapped.pt", members)
    with pytest.raises(CheckpointError, match="'os.system'"):
        load_torch(swapped)
    # 3. legacy stream
    lpath = tmp_path / "evil_legacy.pt"
    lpath.write_bytes(legacy_stream(evil))
    with pytest.raises(CheckpointError, match=re.escape(f"{lpath}: pickle references non-allow-listed global "
                                                        "'os.system'")):
        load_torch(lpath)
    # 4. nested: an NVlabs storage blob (torch.storage._load_from_bytes) hiding the call
    npath = tmp_path / "evil_blob.pkl"
    npath.write_bytes(call_pickle("torch.storage", "_load_from_bytes", legacy_stream(evil), 4))
    with pytest.raises(CheckpointError, match=re.escape(f"{npath}: pickle references non-allow-listed global "
                                                        "'os.system'")):
        load_nvlabs_pickle(npath)
    assert not marker.exists()


def test_tensorflow_pickle_without_network_state_refused(tmp_path, monkeypatch):
    import types

    mods = {n: types.ModuleType(n) for n in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}

    class Network:
        def __init__(self, name):
            self.name = name

        def __getstate__(self):
            return {"version": 4, "name": self.name, "static_kwargs": {}, "components": {}, "variables": []}

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods["dnnlib.tflib.network"].Network = Network
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(pickle.dumps((Network("G"), Network("D"), Network("Gs")), protocol=3))
    with pytest.raises(CheckpointError) as err:  # the state lacks build_func_name: named, one line
        load_nvlabs_pickle(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "TF Network state lacks ['build_func_name']" in msg
    assert "\n" not in msg


# ----------------------------------------------------------------------------------------------------------
# Broken / foreign files


def _truncated_copy(src: Path, dst: Path, keep: int | None = None) -> Path:
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2 if keep is None else keep])
    return dst


@pytest.mark.parametrize("rel,loader", [("sg3t_r64.pkl", load_nvlabs_pickle),
                                        ("sg2ada_r32_resnet_clamp.pkl", load_nvlabs_pickle),
                                        ("rosinality_r64_cm1.converted.pt", load_torch),
                                        ("biggan_128_ch8/pytorch_model.legacy.bin", load_torch)])
def test_truncated_containers(tmp_path, rel, loader):
    path = _truncated_copy(require(CONTAINERS / rel), tmp_path / Path(rel).name)
    with pytest.raises(CheckpointError) as err:
        loader(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and ("truncated" in msg or "corrupt" in msg) and "\n" not in msg, msg


def test_truncated_legacy_storage_data(tmp_path):
    src = require(CONTAINERS / "biggan_128_ch8" / "pytorch_model.legacy.bin")
    path = _truncated_copy(src, tmp_path / "short.bin", keep=src.stat().st_size - 100)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: file is truncated (storage")):
        load_torch(path)


def test_zip_storage_member_too_short(tmp_path):
    members = zip_members(require(CONTAINERS / "rosinality_r64_cm1.converted.pt"))
    key = "rosinality_r64_cm1.converted/data/0"
    members[key] = members[key][:-4]
    path = write_zip(tmp_path / "short_member.pt", members)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: storage '0' holds")):
        load_torch(path)


def test_foreign_and_empty_files(tmp_path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(100))
    rnd = tmp_path / "random.bin"
    rnd.write_bytes(b"\x13" + np.random.default_rng(0).bytes(4096))
    txt = tmp_path / "notes.pt"
    txt.write_text("this is not a checkpoint\n")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    missing = tmp_path / "missing.pkl"
    cases = [(png, "not a recognised checkpoint format"), (rnd, "not a recognised checkpoint format"),
             (txt, "not a recognised checkpoint format"), (empty, "file is empty"),
             (missing, "file not found"), (npy, "single .npy array"), (tmp_path, "is a directory")]
    for path, problem in cases:
        for fn in (detect_format, load_torch, load_nvlabs_pickle):
            with pytest.raises(CheckpointError) as err:
                fn(path)
            msg = str(err.value)
            assert msg.startswith(f"{path}: ") and problem in msg and "\n" not in msg, (fn.__name__, msg)
    with pytest.raises(CheckpointError, match=re.escape(f"{missing}: file not found")):
        sha256_file(missing)


def test_zip_without_data_pkl_and_npz(tmp_path):
    plain = write_zip(tmp_path / "model.pt", {"model/readme.txt": b"hello"})
    for fn in (detect_format, load_torch):
        with pytest.raises(CheckpointError, match=re.escape(f"{plain}: zip archive has no <root>/data.pkl")):
            fn(plain)
    npz = tmp_path / "w.npz"
    np.savez(npz, a=np.zeros(2))
    assert detect_format(npz) == "npz"
    with pytest.raises(CheckpointError, match=re.escape(f"{npz}: is a npz file, not a torch.save file")):
        load_torch(npz)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(50))
    with pytest.raises(CheckpointError, match=re.escape(f"{bad}: truncated or corrupt zip archive")):
        load_torch(bad)


def test_corrupt_pickle_in_zip(tmp_path):
    path = write_zip(tmp_path / "c.pt", {"c/data.pkl": b"\x80\x02}q\x00(X\x01\x00"})
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: ")) as err:
        load_torch(path)
    assert "truncated" in str(err.value) or "corrupt" in str(err.value)


# ----------------------------------------------------------------------------------------------------------
# The readers never need torch


def test_no_torch_import_in_packages():
    pattern = re.compile(r"^\s*(import\s+torch\b|from\s+torch(\.\w+)*\s+import\b)", re.M)
    offenders = [str(p.relative_to(ROOT)) for pkg in ("jaxinv", "weights_convert")
                 for p in (ROOT / pkg).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_readers_import_nothing_from_jaxinv():
    """weights_convert is the floor under jaxinv: its readers never import jaxinv (only `jaxinv convert` builds)."""
    pattern = re.compile(r"^\s*(import\s+jaxinv\b|from\s+jaxinv(\.\w+)*\s+import\b)", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "weights_convert").rglob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []


def test_readers_work_with_torch_blocked():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from weights_convert.torch_formats import load_nvlabs_pickle, load_torch\n"
        f"sd = load_nvlabs_pickle({str(require(CONTAINERS / 'sg3t_r64.pkl'))!r})['G_ema'].state_dict()\n"
        f"ck = load_torch({str(require(CONTAINERS / 'rosinality_r64_cm1.converted.pt'))!r})\n"
        f"lg = load_torch({str(require(CONTAINERS / 'biggan_128_ch8' / 'pytorch_model.legacy.bin'))!r})\n"
        "print(len(sd), len(ck['g_ema']), len(lg), 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    n_sd = len(np.load(GOLDEN / "sg3t_r64.weights.npz").files)
    n_ros = len(np.load(GOLDEN / "rosinality_r64_cm1.weights.npz").files)
    assert out.stdout.split() == [str(n_sd), str(n_ros), "506", "False"]


def test_handwritten_zip_byteorder_and_old_rebuild_tensor(tmp_path):
    """Zip written without torch: arbitrary storage keys, big-endian byteorder, and the pre-v2
    `_rebuild_tensor(storage, offset, size, stride)`."""
    storage = Ops.pid(Ops.tup(Ops.s("storage"), Ops.glob("torch", "FloatStorage"), Ops.s("k_a"), Ops.s("cpu"),
                              Ops.i(3)))
    v2 = Ops.end(Ops.call(Ops.glob("torch._utils", "_rebuild_tensor_v2"), storage, Ops.i(1), Ops.ints(2),
                          Ops.ints(1), b"\x89", Ops.call(Ops.glob("collections", "OrderedDict"))))
    v1 = Ops.end(Ops.call(Ops.glob("torch._utils", "_rebuild_tensor"), storage, Ops.i(1), Ops.ints(2), Ops.ints(1)))
    values = np.array([1.5, -2.0, 3.25], dtype=">f4")
    for order, raw in (("little", values.astype("<f4").tobytes()), ("big", values.tobytes())):
        for data_pkl in (v2, v1):
            path = write_zip(tmp_path / f"{order}.pt", {"x/data.pkl": data_pkl, "x/byteorder": order.encode(),
                                                        "x/data/k_a": raw})
            got = load_torch(path)
            assert got.dtype == np.float32 and got.tolist() == [-2.0, 3.25], (order, got)


def test_handwritten_implausible_inputs(tmp_path):
    storage = Ops.pid(Ops.tup(Ops.s("storage"), Ops.glob("torch", "FloatStorage"), Ops.s("0"), Ops.s("cpu"),
                              Ops.i(3)))
    cases = [
        # a zero-stride view claiming 2**40 elements over 3 stored floats
        (Ops.call(Ops.glob("torch._utils", "_rebuild_tensor_v2"), storage, Ops.i(0), Ops.ints(1 << 20, 1 << 20),
                  Ops.ints(0, 0), b"\x89", Ops.call(Ops.glob("collections", "OrderedDict"))), "implausibly large"),
        # a view running past the end of its storage
        (Ops.call(Ops.glob("torch._utils", "_rebuild_tensor_v2"), storage, Ops.i(2), Ops.ints(2), Ops.ints(1),
                  b"\x89", Ops.call(Ops.glob("collections", "OrderedDict"))), "exceeds its storage"),
        # TorchScript archives reference __torch__ classes
        (Ops.call(Ops.glob("__torch__.model", "Generator")), "TorchScript archive"),
    ]
    for body, problem in cases:
        path = fx.write_zip(tmp_path / "x.pt", {"x/data.pkl": Ops.end(body), "x/data/0": bytes(12)})
        with pytest.raises(CheckpointError, match=re.escape(f"{path}: ")) as err:
            load_torch(path)
        assert problem in str(err.value), str(err.value)


def test_handwritten_legacy_storage_view_and_cuda_storage(tmp_path):
    """Pre-1.0 legacy files: storage views (view_metadata) and storages saved from a GPU."""
    view = Ops.pid(Ops.tup(Ops.s("storage"), Ops.glob("torch.cuda", "FloatStorage"), Ops.s("root"),
                           Ops.s("cuda:0"), Ops.i(5), Ops.tup(Ops.s("view1"), Ops.i(1), Ops.i(3))))
    obj = Ops.end(Ops.call(Ops.glob("torch._utils", "_rebuild_tensor_v2"), view, Ops.i(1), Ops.ints(2),
                           Ops.ints(1), b"\x89", Ops.call(Ops.glob("collections", "OrderedDict"))))
    data = np.arange(5, dtype="<f4") * 10
    path = tmp_path / "old.pt"
    path.write_bytes(legacy_stream(obj, ["root"], np.int64(5).tobytes() + data.tobytes()))
    assert detect_format(path) == "torch_legacy"
    got = load_torch(path)
    assert got.tolist() == [20.0, 30.0]  # view = root[1:4], tensor = view[1:3]
