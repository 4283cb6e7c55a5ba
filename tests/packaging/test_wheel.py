"""The sdist and the wheel of this checkout build (the wheel from the sdist), the sdist holds the tests, docs and
examples, and the wheel installs into a fresh virtual environment whose `udr demo` runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a user who downloads the sdist gets besides the package: a sample of each tree and the top-level files.
IN_SDIST = ("pyproject.toml", "README.md", "LICENSE", "tests/conftest.py", "tests/packaging/test_wheel.py",
            "tests/golden/v2/lake/FORMAT", "docs/quickstart.md", "docs/FORMAT.md", "examples/changelog_demo.py",
            "examples/nightly_refresh/lotitude.py", "udr/py.typed")


# The children see neither this checkout nor the test's virtual environment (`PYTHONPATH` would make pip
# take the checkout's build metadata for an installed udr-lake).
CLEAN = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _env(path: Path) -> Path:
    """A fresh virtual environment with pip; its bin directory."""
    venv.create(path, with_pip=True)
    return path / "bin"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_sdist_and_wheel_build_install_into_a_fresh_venv_and_run_the_demo(tmp_path: Path) -> None:
    builder = _env(tmp_path / "builder")
    subprocess.run([str(builder / "python"), "-m", "pip", "install", "-q", "build"], check=True, timeout=600,
                   env=CLEAN)
    # Without --sdist/--wheel, `build` makes the sdist, then the wheel from the unpacked sdist: a file the
    # sdist forgot fails here.
    metadata = ROOT / "udr_lake.egg-info"  # setuptools writes it into the checkout while making the sdist
    existed = metadata.exists()
    try:
        subprocess.run([str(builder / "python"), "-m", "build", "-q", "--outdir", str(tmp_path / "dist"), str(ROOT)],
                       check=True, timeout=900, cwd=tmp_path, env=CLEAN)
    finally:
        if not existed:
            shutil.rmtree(metadata, ignore_errors=True)
    [sdist] = (tmp_path / "dist").glob("udr_lake-*.tar.gz")
    [wheel] = (tmp_path / "dist").glob("udr_lake-*.whl")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert [name for name in IN_SDIST if name not in members] == []
    assert not [name for name in members if "__pycache__" in name or name.startswith("bench/.data")]

    bin_dir = _env(tmp_path / "env")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600,
                   env=CLEAN)
    done = subprocess.run([str(bin_dir / "udr"), "demo", str(tmp_path / "lake")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, check=False, env=CLEAN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "lake" / "FORMAT").is_file()
    # The installed copy ran, not this checkout.
    where = subprocess.run([str(bin_dir / "python"), "-c", "import udr; print(udr.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path, env=CLEAN).stdout
    assert where.startswith(str(tmp_path / "env")), where
