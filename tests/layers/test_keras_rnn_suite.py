"""Keras' own RNN layer tests, run on our drop-in classes (issue: Keras fidelity).

The installed Keras ships its test files (`keras/src/layers/rnn/{gru,lstm,simple_rnn,
bidirectional}_test.py`). Each refers to the layers as `layers.GRU` etc. through its module-level
`layers` (`from keras.src import layers`); here that name is replaced, in those four modules only,
by a view of `keras.src.layers` whose GRU, LSTM and SimpleRNN are `tf_rnn_ops.layers`'. The test
classes are subclassed under new names so that pytest collects them from this file (Keras' own
markers — skipif for other backends, xfail — come along).
"""

from __future__ import annotations

import importlib
import types

import keras  # noqa: F401  (Keras first: its test modules import keras.src)
import pytest

import tf_rnn_ops.layers as ours

_SUBSTITUTED = {"GRU": ours.GRU, "LSTM": ours.LSTM, "SimpleRNN": ours.SimpleRNN}


def _substituted_layers_module():
    from keras.src import layers as keras_layers

    view = types.ModuleType("keras.src.layers (tf_rnn_ops substituted)")
    view.__dict__.update(keras_layers.__dict__)
    view.__dict__.update(_SUBSTITUTED)
    return view


def _load(name: str):
    try:
        module = importlib.import_module(f"keras.src.layers.rnn.{name}")
    except ImportError:  # pragma: no cover - a Keras without its test files
        pytest.skip(f"no keras.src.layers.rnn.{name} in this Keras", allow_module_level=True)
    module.layers = _substituted_layers_module()
    return module


_gru = _load("gru_test")
_lstm = _load("lstm_test")
_simple_rnn = _load("simple_rnn_test")
_bidirectional = _load("bidirectional_test")


class TestKerasGRUSuite(_gru.GRUTest):
    pass


class TestKerasLSTMSuite(_lstm.LSTMTest):
    pass


class TestKerasSimpleRNNSuite(_simple_rnn.SimpleRNNTest):
    pass


class TestKerasBidirectionalSuite(_bidirectional.SimpleRNNTest):
    pass


def test_the_suite_runs_our_classes():
    """The substitution is in place: each Keras test module builds our layers."""
    for module in (_gru, _lstm, _simple_rnn, _bidirectional):
        for name, cls in _SUBSTITUTED.items():
            assert getattr(module.layers, name) is cls
        assert module.layers.Bidirectional is keras.layers.Bidirectional
