#!/usr/bin/env python3
"""Writes the small weight-file fixtures of tests/test_safetensors.cpp and
tests/test_torch_checkpoint.cpp to tests/data/io/, using the Python reference libraries.

    python3 scripts/make_io_fixtures.py        # needs torch and safetensors (pip install safetensors)

Files:
  python_dtypes.safetensors    every dtype LibTorch shares with safetensors, 0-rank and empty
                               tensors; one metadata key so the bytes are deterministic (the
                               reference writer orders several keys by hash)
  python_metadata.safetensors  several metadata entries, with escapes and non-ASCII text
  plain.pt                     torch.save(module.state_dict()): an OrderedDict with _metadata
  wrapped_module.pt            {'state_dict': {'module.<name>': ...}, 'epoch': 7}
  orig_mod.pt                  keys 'module._orig_mod.<name>' plus a non-tensor entry
  views.pt                     transposed, offset and storage-sharing tensors
  dtypes.pt                    one tensor per storage type, bf16/fp16, an nn.Parameter, and
                               the _rebuild_tensor_v3 dtypes (uint16, float8)
  custom_class.pt              pickles an instance of a user class: must be rejected
  protocol4.pt                 torch.save(..., pickle_protocol=4): must be rejected
  legacy.pt                    the pre-1.6 non-zip format: must be rejected
  expected.safetensors         "<file stem>/<key>" -> contiguous copy of every tensor above,
                               under the key the C++ loader reports (prefixes stripped)
"""
import collections
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "io"


class Custom:
    """Stands for any class a checkpoint may pickle that a state-dict loader must refuse."""

    def __init__(self):
        self.value = 3


def small_module():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    module.register_buffer("scale", torch.tensor([0.5, 2.0]))
    return module


def safetensors_fixtures():
    g = torch.Generator().manual_seed(1)
    floats = torch.randn(2, 3, generator=g)
    tensors = {
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "f32": floats,
        "f32_scalar": torch.tensor(1.25),
        "f32_empty": torch.zeros(0, 4),
        "f16": floats.half(),
        "bf16": floats.bfloat16(),
        "c64": torch.complex(floats, -floats),
        "i64": torch.tensor([-(2**40), 0, 2**40]),
        "i32": torch.tensor([[-5, 6], [7, -8]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "u16": torch.tensor([65535, 1], dtype=torch.int32).to(torch.uint16),
        "u32": torch.tensor([2**32 - 1, 2], dtype=torch.int64).to(torch.uint32),
        "u64": torch.tensor([2**62, 3], dtype=torch.int64).to(torch.uint64),
        "bool": torch.tensor([True, False, True]),
        "f8_e4m3": floats.to(torch.float8_e4m3fn),
        "f8_e5m2": floats.to(torch.float8_e5m2),
        "f8_e8m0": torch.tensor([0.5, 4.0]).to(torch.float8_e8m0fnu),
        "f8_e4m3fnuz": floats.to(torch.float8_e4m3fnuz),
        "f8_e5m2fnuz": floats.to(torch.float8_e5m2fnuz),
        "z_last_f32": torch.arange(4.0),  # same dtype as f32: sorted after it by name
    }
    save_file(tensors, OUT / "python_dtypes.safetensors", metadata={"format": "pt"})
    save_file(
        {"x": torch.ones(2)},
        OUT / "python_metadata.safetensors",
        metadata={"format": "pt", "quote\"and\\slash": "line\nbreak", "caf\u00e9": "\u65e5\u672c"},
    )


def checkpoint_fixtures(expected):
    state = small_module().state_dict()
    torch.save(state, OUT / "plain.pt")
    expected.update({f"plain/{k}": v for k, v in state.items()})

    wrapped = collections.OrderedDict((f"module.{k}", v) for k, v in state.items())
    torch.save({"state_dict": wrapped, "epoch": 7}, OUT / "wrapped_module.pt")
    expected.update({f"wrapped_module/{k}": v for k, v in state.items()})

    compiled = collections.OrderedDict((f"module._orig_mod.{k}", v) for k, v in state.items())
    compiled["module._orig_mod.step"] = 12
    torch.save(compiled, OUT / "orig_mod.pt")
    expected.update({f"orig_mod/{k}": v for k, v in state.items()})

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = {"base": base, "transposed": base.t(), "row_slice": base[1:3], "strided": base[:, 1::2]}
    torch.save(views, OUT / "views.pt")
    expected.update({f"views/{k}": v for k, v in views.items()})

    g = torch.Generator().manual_seed(2)
    values = torch.randn(5, generator=g)
    typed = {
        "float64": values.double(),
        "float32": values,
        "float16": values.half(),
        "bfloat16": values.bfloat16(),
        "int64": torch.tensor([-(2**40), 5]),
        "int32": torch.tensor([-7, 8], dtype=torch.int32),
        "int16": torch.tensor([-300, 300], dtype=torch.int16),
        "int8": torch.tensor([-128, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False]),
        "uint16": torch.tensor([65535, 1], dtype=torch.int32).to(torch.uint16),
        "float8_e4m3fn": values.to(torch.float8_e4m3fn),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "parameter": torch.nn.Parameter(values.clone()),
    }
    torch.save(typed, OUT / "dtypes.pt")
    expected.update({f"dtypes/{k}": v.detach() for k, v in typed.items()})

    torch.save({"weight": values, "config": Custom()}, OUT / "custom_class.pt")
    torch.save(state, OUT / "protocol4.pt", pickle_protocol=4)
    torch.save(state, OUT / "legacy.pt", _use_new_zipfile_serialization=False)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    safetensors_fixtures()
    expected = {}
    checkpoint_fixtures(expected)
    expected = {k: v.contiguous().clone() for k, v in expected.items()}
    save_file(expected, OUT / "expected.safetensors", metadata={"generator": "make_io_fixtures.py"})
    for path in sorted(OUT.iterdir()):
        size = path.stat().st_size
        assert size < 50_000, f"{path} is {size} bytes"
        print(f"{size:7d}  {path.relative_to(OUT.parent.parent.parent)}")


if __name__ == "__main__":
    main()
