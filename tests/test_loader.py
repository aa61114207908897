"""The loader's decision to load the GPU kernels: only for GPUs and a driver they can run on
(else the ops, placed on the GPU, would fail every call instead of running on CPU)."""

from __future__ import annotations

import re

import pytest
import tensorflow as tf

from tf_rnn_ops import _loader


@pytest.mark.parametrize(
    "capabilities,driver",
    [([(9, 0)], 13000), ([(8, 0)], 13000), ([(8, 6), (12, 0)], 13020), ([(10, 0)], 14000)],
)
def test_usable_gpus(capabilities, driver):
    assert _loader.gpu_kernels_unusable_reason(capabilities, driver) is None


@pytest.mark.parametrize(
    "capabilities,driver,pattern",
    [
        ([(7, 5)], 13000, r"GPU 0 has compute capability 7\.5; the kernels are built for 8\.0"),
        ([(9, 0), (6, 1)], 13000, r"GPU 1 has compute capability 6\.1"),
        ([(9, 0)], 12080, r"driver supports CUDA 12\.8, but the kernels are built with CUDA 13"),
        ([(9, 0)], None, r"no CUDA driver version"),
        ([None], 13000, r"no compute capability for GPU 0"),
    ],
)
def test_unusable_gpus(capabilities, driver, pattern):
    reason = _loader.gpu_kernels_unusable_reason(capabilities, driver)
    assert reason is not None
    assert re.search(pattern, reason), reason


class _Fake:
    def __init__(self, monkeypatch, gpus, capabilities, driver):
        self.loaded = []
        monkeypatch.setattr(_loader, "GPU_LIBRARY_PATH", __file__)  # a file that exists
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
        monkeypatch.setattr(_loader, "_gpu_compute_capabilities", lambda _: capabilities)
        monkeypatch.setattr(_loader, "_cuda_driver_version", lambda: driver)
        monkeypatch.setattr(
            _loader, "_load", lambda path, kernels_only=False: self.loaded.append(path)
        )


def test_loads_for_a_usable_gpu(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(9, 0)], 13000)
    assert _loader.load_gpu_kernels.__wrapped__() is True
    assert fake.loaded == [__file__]


def test_warns_and_stays_on_cpu_for_an_old_gpu(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(7, 5)], 13000)
    with pytest.warns(RuntimeWarning, match=r"GPU kernels not loaded: GPU 0 has compute capab"):
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == []


def test_warns_and_stays_on_cpu_for_an_old_driver(monkeypatch):
    fake = _Fake(monkeypatch, ["gpu0"], [(9, 0)], 12090)
    with pytest.warns(RuntimeWarning, match=r"CUDA 12\.9.*The ops run on CPU"):
        assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == []


def test_nothing_without_a_gpu(monkeypatch):
    fake = _Fake(monkeypatch, [], [], 13000)
    assert _loader.load_gpu_kernels.__wrapped__() is False
    assert fake.loaded == []


def test_this_machine():
    """On this CPU-only machine: no GPU, so the real helpers say what they can."""
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    assert _loader._gpu_compute_capabilities([]) == []
    driver = _loader._cuda_driver_version()
    assert driver is None or driver > 0
