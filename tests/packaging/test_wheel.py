"""The wheel (`make wheel`) and `pip install`.

Fast checks (in `make test`): the platform tag logic, and the messages that say what to install when
TensorFlow is missing or another version. The `wheel` checks (`make test-wheel`, run by CI) install
the built wheel with pip into a fresh venv beside `tensorflow-cpu==2.21.0` (through the wheel's
`[cpu]` extra) and run tests/packaging/wheel_smoke.py there from outside the source tree; resolve
the wheel over TensorFlow's GPU build `tensorflow==2.21.0` (a dry run: it must not pull
tensorflow-cpu); and build the package from the source tree with `pip install --no-build-isolation
--no-index .` (offline) in that venv. `make test-wheel-tensorflow` installs the GPU build itself
(~570 MB) and runs the wheel there.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import platform_tag  # noqa: E402

SMOKE = os.path.join(REPO, "tests", "packaging", "wheel_smoke.py")
# The op libraries, x86-64-v3 and x86-64-v4 (the Makefile builds both; the loader picks).
LIBRARIES = (
    "_tf_rnn_ops.so",
    "_tf_cudnn_cpu_kernels.so",
    "_tf_rnn_ops_avx512.so",
    "_tf_cudnn_cpu_kernels_avx512.so",
)
PIP = ["-m", "pip", "--disable-pip-version-check"]


# ---------------------------------------------------------------- fast


@pytest.mark.parametrize(
    "needed, tag",
    [
        ({"GLIBC": "2.27", "GLIBCXX": "3.4.30", "CXXABI": "1.3.9"}, "manylinux_2_35_x86_64"),
        ({"GLIBC": "2.17", "GLIBCXX": "3.4.29"}, "manylinux_2_34_x86_64"),
        ({"GLIBC": "2.14", "GLIBCXX": "3.4.21"}, "manylinux_2_27_x86_64"),  # TensorFlow's floor
        ({"GLIBC": "2.29"}, "manylinux_2_31_x86_64"),
        ({"GLIBC": "2.36", "GCC": "3.0"}, "manylinux_2_36_x86_64"),
        ({"GLIBC": "2.27", "CXXABI": "1.3.15"}, "manylinux_2_39_x86_64"),
        ({"GLIBC": "2.27", "GLIBCXX": "3.4.34"}, "linux_x86_64"),  # newer than any policy
    ],
)
def test_manylinux_tag_is_the_lowest_policy_with_every_symbol_version(needed, tag):
    assert platform_tag.manylinux_tag(needed, machine="x86_64") == tag


def test_other_machines_get_a_plain_linux_tag():
    assert platform_tag.manylinux_tag({"GLIBC": "2.17"}, machine="aarch64") == "linux_aarch64"


def test_needed_versions_of_the_built_libraries():
    """What readelf reports the libraries need, against objdump's independent listing."""
    libs = [os.path.join(REPO, "tf_rnn_ops", n) for n in LIBRARIES]
    needed = platform_tag.needed_versions(libs)
    dump = subprocess.run(["objdump", "-T", *libs], check=True, capture_output=True, text=True)
    undefined = [line for line in dump.stdout.splitlines() if "*UND*" in line]
    for name in ("GLIBC", "GLIBCXX", "CXXABI"):
        versions = {
            v for line in undefined for v in re.findall(rf"\b{name}_([0-9][0-9.]*)\b", line)
        }
        newest = max(versions, key=platform_tag._key)
        assert needed[name] == newest, (name, needed[name], newest)


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
    )


def test_import_without_tensorflow_says_what_to_install():
    proc = _run_python("import sys; sys.modules['tensorflow'] = None; import tf_rnn_ops")
    assert proc.returncode != 0
    assert "none is installed" in proc.stderr
    assert "pip install tensorflow-cpu==2.21.0" in proc.stderr
    assert "tensorflow==2.21.0" in proc.stderr


def test_import_with_another_tensorflow_says_what_to_install():
    proc = _run_python(
        "import tensorflow as tf; tf.__version__ = '2.22.0'; import tf_rnn_ops",
        TF_RNN_OPS_LIBRARY="",
    )
    assert proc.returncode != 0
    assert "built against TensorFlow 2.21.0, but TensorFlow 2.22.0" in proc.stderr
    assert "pip install tensorflow-cpu==2.21.0" in proc.stderr


def test_building_without_tensorflow_refuses_with_what_to_do():
    code = (
        "import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = ['tf_flags.py'];"
        "runpy.run_path('tools/tf_flags.py', run_name='__main__')"
    )
    proc = _run_python(code)
    assert proc.returncode == 1
    assert "pip install tensorflow-cpu==2.21.0" in proc.stderr
    assert "without --no-build-isolation" in proc.stderr


def test_the_package_names_no_tensorflow_distribution_outside_its_extras():
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("tensorflow")]
    assert project["optional-dependencies"]["cpu"] == ["tensorflow-cpu==2.21.0"]
    assert project["optional-dependencies"]["and-cuda"] == ["tensorflow[and-cuda]==2.21.0"]


# ---------------------------------------------------------------- the built wheel


def _wheel() -> str:
    wheel_dir = os.environ.get("TF_RNN_OPS_WHEEL_DIR")
    if not wheel_dir:
        pytest.fail("the wheel tests need a built wheel: run them with `make test-wheel`")
    wheels = glob.glob(os.path.join(wheel_dir, "tf_rnn_ops-*.whl"))
    assert len(wheels) == 1, wheels
    return os.path.abspath(wheels[0])


def _make_venv(path: str, *requirements: str) -> str:
    """A fresh venv (no system site-packages) with `requirements` installed by pip; its python."""
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    python = os.path.join(path, "bin", "python")
    t0 = time.monotonic()
    subprocess.run([python, *PIP, "install", "--quiet", *requirements], check=True)
    print(f"pip install {' '.join(requirements)}: {time.monotonic() - t0:.0f} s")
    return python


def _smoke(python: str, tmp_path) -> str:
    """Runs wheel_smoke.py with `python` from a folder outside the source tree."""
    work = tmp_path / "outside"
    work.mkdir(exist_ok=True)
    script = shutil.copy(SMOKE, work / "wheel_smoke.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_RNN_OPS_LIBRARY")}
    proc = subprocess.run(
        [python, str(script)], cwd=work, capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    assert "wheel smoke: OK" in proc.stdout
    return proc.stdout


def _installed(python: str) -> dict[str, str]:
    out = subprocess.run(
        [python, *PIP, "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


@pytest.fixture(scope="module")
def cpu_venv(tmp_path_factory):
    """A fresh venv with the wheel and its [cpu] extra (tensorflow-cpu==2.21.0) installed by pip."""
    return _make_venv(str(tmp_path_factory.mktemp("venv") / "cpu"), f"{_wheel()}[cpu]")


@pytest.mark.wheel
def test_wheel_carries_the_libraries_and_says_what_it_needs(tmp_path):
    wheel = _wheel()
    name = os.path.basename(wheel)
    m = re.fullmatch(r"tf_rnn_ops-0\.1\.0-py3-none-(manylinux_2_\d+_x86_64)\.whl", name)
    assert m, name
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        for lib in LIBRARIES:
            assert f"tf_rnn_ops/{lib}" in files
            z.extract(f"tf_rnn_ops/{lib}", tmp_path)
        assert json.loads(z.read("tf_rnn_ops/_build_info.json"))["tensorflow_version"] == "2.21.0"
        assert "tf_rnn_ops/layers/rnn.py" in files
        metadata = z.read("tf_rnn_ops-0.1.0.dist-info/METADATA").decode()
        wheel_info = z.read("tf_rnn_ops-0.1.0.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false" in wheel_info
    libs = glob.glob(str(tmp_path / "tf_rnn_ops" / "*.so"))
    assert m.group(1) == platform_tag.manylinux_tag(platform_tag.needed_versions(libs))
    # No TensorFlow distribution is required except through an extra.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for line in requires:
        if re.match(r"Requires-Dist: tensorflow", line):
            assert "extra ==" in line, line
    assert any(
        re.match(r'Requires-Dist: tensorflow-cpu==2\.21\.0; extra == "cpu"', r) for r in requires
    )


@pytest.mark.wheel
def test_wheel_in_a_fresh_venv_with_tensorflow_cpu(cpu_venv, tmp_path):
    installed = _installed(cpu_venv)
    assert installed["tf-rnn-ops"] == "0.1.0"
    assert installed["tensorflow-cpu"] == "2.21.0"
    assert "tensorflow" not in installed
    out = _smoke(cpu_venv, tmp_path)
    assert "site-packages/tf_rnn_ops" in out
    subprocess.run([cpu_venv, *PIP, "check"], check=True)


@pytest.mark.wheel
def test_wheel_over_tensorflow_gpu_build_pulls_no_tensorflow_cpu(cpu_venv, tmp_path):
    """A dry-run resolve of the wheel beside `tensorflow==2.21.0` (TensorFlow's GPU build), as in an
    environment that has it: pip would install `tensorflow` and never `tensorflow-cpu`."""
    report = tmp_path / "report.json"
    subprocess.run(
        [cpu_venv, *PIP, "install", "--quiet", "--dry-run", "--ignore-installed",
         "--report", str(report), _wheel(), "tensorflow==2.21.0"],
        check=True,
    )  # fmt: skip
    names = {
        i["metadata"]["name"].lower().replace("_", "-")
        for i in json.loads(report.read_text())["install"]
    }
    assert {"tf-rnn-ops", "tensorflow"} <= names
    assert "tensorflow-cpu" not in names


@pytest.mark.wheel
def test_pip_install_source_tree_offline_without_build_isolation(cpu_venv, tmp_path):
    """`pip install --no-build-isolation --no-index .` in the venv (TensorFlow already there,
    nothing downloaded): compiles against that TensorFlow and works from outside the tree."""
    subprocess.run([cpu_venv, *PIP, "uninstall", "--quiet", "--yes", "tf_rnn_ops"], check=True)
    t0 = time.monotonic()
    subprocess.run(
        [cpu_venv, *PIP, "install", "--quiet", "--no-build-isolation", "--no-index", REPO],
        check=True,
        timeout=1800,
    )
    print(f"pip install --no-build-isolation --no-index .: {time.monotonic() - t0:.0f} s")
    _smoke(cpu_venv, tmp_path)


@pytest.mark.wheel
@pytest.mark.tensorflow_gpu_build
def test_wheel_in_a_fresh_venv_with_tensorflow_gpu_build(tmp_path):
    """TensorFlow's GPU build (`tensorflow==2.21.0`, ~570 MB) first, then the wheel: pip installs
    the wheel alone (no tensorflow-cpu), and its CPU libraries work there."""
    python = _make_venv(str(tmp_path / "gpu"), "tensorflow==2.21.0")
    report = tmp_path / "report.json"
    subprocess.run(
        [python, *PIP, "install", "--quiet", "--dry-run", "--report", str(report), _wheel()],
        check=True,
    )
    names = {i["metadata"]["name"] for i in json.loads(report.read_text())["install"]}
    assert names == {"tf_rnn_ops"} or names == {"tf-rnn-ops"}, names
    subprocess.run([python, *PIP, "install", "--quiet", _wheel()], check=True)
    installed = _installed(python)
    assert installed["tensorflow"] == "2.21.0"
    assert "tensorflow-cpu" not in installed
    _smoke(python, tmp_path)
