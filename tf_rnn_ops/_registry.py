"""Registers gradients so that importing (or reloading) the package twice never raises."""

from __future__ import annotations

from collections.abc import Callable

from tensorflow.python.framework import ops as _tf_ops


def register_gradient(op_type: str) -> Callable:
    """Like `tf.RegisterGradient(op_type)`, but a second registration of the same op is a no-op."""

    def decorator(fn: Callable) -> Callable:
        try:
            _tf_ops.RegisterGradient(op_type)(fn)
        except KeyError:  # already registered by an earlier import
            pass
        return fn

    return decorator


def has_gradient(op_type: str) -> bool:
    """Whether TensorFlow's gradient registry has a function for `op_type`."""
    try:
        _tf_ops._gradient_registry.lookup(op_type)  # noqa: SLF001 (no public lookup)
    except LookupError:
        return False
    return True


def register_gradient_if_missing(op_type: str) -> Callable:
    """Registers the gradient of one of TensorFlow's own ops only where TensorFlow has none.

    A TensorFlow that registers its own gradient for `op_type` keeps it (the check runs once, at
    the first import; a reload finds our own registration and leaves it too).
    """
    if has_gradient(op_type):
        return lambda fn: fn
    return register_gradient(op_type)
