"""The signatures of every `TfRnn>` op, pinned: names, inputs, outputs, attrs (order, types, allowed
values, defaults) and flags, as the compiled library registers them, against `op_defs.json`.

A SavedModel or GraphDef names our ops with their attrs, and the generated Python wrappers take the
attrs in op_def order: a changed default, a reordered attr or a dropped spelling breaks models saved
before it. So a signature changes only on purpose: change the registration, run

    .venv/bin/python tests/packaging/test_op_defs.py --write

and commit the new op_defs.json with it (its diff shows the change). The op docs are left out of the
pin (they are text, not signature).
"""

from __future__ import annotations

import difflib
import json
import os
import sys

import pytest

PINNED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "op_defs.json")
REGENERATE = ".venv/bin/python tests/packaging/test_op_defs.py --write"


def registered_op_defs() -> dict[str, str]:
    """op name -> its OpDef in protobuf text format, docs stripped, for every op the library at
    tf_rnn_ops._loader.LIBRARY_PATH registers (read from the library's own op list, so an op that
    another library registers under our prefix is not ours)."""
    from google.protobuf import text_format
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as py_tf

    from tf_rnn_ops import _loader

    _loader.ops()  # loaded the usual way first (the checks of the loader)
    handle = py_tf.TF_LoadLibrary(_loader.LIBRARY_PATH)
    try:
        op_list = op_def_pb2.OpList.FromString(py_tf.TF_GetOpList(handle))
    finally:
        py_tf.TF_DeleteLibraryHandle(handle)
    defs = {}
    for op in op_list.op:
        op.ClearField("summary")
        op.ClearField("description")
        for field in (op.input_arg, op.output_arg, op.attr):
            for arg in field:
                arg.ClearField("description")
        defs[op.name] = text_format.MessageToString(op)
    return dict(sorted(defs.items()))


def _pinned() -> dict[str, str]:
    """The pinned op defs ({} before the first --write: then the tests below fail, naming it)."""
    if not os.path.exists(PINNED):
        return {}
    with open(PINNED) as f:
        return json.load(f)


def test_every_op_is_pinned_and_no_pinned_op_is_gone():
    got, pinned = registered_op_defs(), _pinned()
    assert all(name.startswith("TfRnn>") for name in got), sorted(got)
    assert set(got) == set(pinned), (
        f"new ops: {sorted(set(got) - set(pinned))}; ops gone: {sorted(set(pinned) - set(got))}. "
        f"If on purpose: {REGENERATE}"
    )


@pytest.mark.parametrize("name", sorted(_pinned()))
def test_op_signature_is_unchanged(name):
    got = registered_op_defs().get(name)
    assert got is not None, f"{name} is no longer registered. If on purpose: {REGENERATE}"
    pinned = _pinned()[name]
    diff = "\n".join(
        difflib.unified_diff(
            pinned.splitlines(), got.splitlines(), "op_defs.json", "registered", lineterm=""
        )
    )
    assert got == pinned, f"{name}'s signature changed:\n{diff}\nIf on purpose: {REGENERATE}"


def test_the_pin_covers_the_fused_family_and_its_attrs():
    """The pin itself holds what it is for (a truncated or hand-edited file would pin nothing)."""
    pinned = _pinned()
    family = [
        "TfRnn>CudnnRNN",
        "TfRnn>CudnnRNNBackprop",
        "TfRnn>CudnnRNNParamsSize",
        "TfRnn>CudnnRNNParamsToCanonical",
        "TfRnn>CudnnRNNCanonicalToParams",
        "TfRnn>KerasRNN",
    ]
    for name in family:
        text = pinned[name]
        assert 'name: "rnn_mode"' in text and 'default_value {\n    s: "lstm"' in text, name
        for mode in ("rnn_relu", "rnn_tanh", "lstm", "gru", "gru_reset_before"):
            assert f's: "{mode}"' in text, (name, mode)
    for name in family[:-1]:
        for attr in ("input_mode", "direction", "dropout", "seed", "seed2", "num_proj"):
            assert f'name: "{attr}"' in pinned[name], (name, attr)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write   (rewrites {PINNED} from the built library)")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    defs = registered_op_defs()
    with open(PINNED, "w") as f:
        json.dump(defs, f, indent=1)
        f.write("\n")
    print(f"wrote {PINNED}")
