"""The Dockerfile's steps, run without a container engine (none runs on the machines that test UDR).

The test reads the Dockerfile and replays it in a temporary root: `FROM python:X.Y-slim` becomes a fresh virtual
environment of this Python (the test is skipped when X.Y differs), `WORKDIR`/`COPY` act on directories under
the root, `RUN` runs in a shell with that environment first on `PATH`, and `CMD` runs last, where the image
would. A file the image needs but `COPY` forgets, a broken install or a wrong command fails here; what only a
real image shows (the base image's system libraries) is not checked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(keyword, argument) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


class _Image:
    """A directory standing in for the image's file system, and the replay of each instruction in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workdir = "/"
        self.bin: Path | None = None
        self.command: list[str] = []

    def inside(self, path: str) -> Path:
        absolute = path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"
        return self.root / absolute.lstrip("/")

    def shell(self, command: str) -> str:
        """The command with every absolute path the Dockerfile named moved under the root."""
        return re.sub(r"(?<![\w.])/(?=[\w])", f"{self.root}/", command)

    def apply(self, keyword: str, argument: str) -> None:
        if keyword == "FROM":
            version = re.fullmatch(r"python:(\d+\.\d+)(-slim)?", argument)
            assert version, f"unsupported base image {argument}"
            if version.group(1) != f"{sys.version_info.major}.{sys.version_info.minor}":
                pytest.skip(f"the image's Python is {version.group(1)}, this one is {sys.version.split()[0]}")
            venv.create(self.root / "python", with_pip=True)
            self.bin = self.root / "python" / "bin"
        elif keyword == "WORKDIR":
            self.workdir = argument
            self.inside(argument).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = shlex.split(argument)
            target = self.inside(destination)
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif keyword == "RUN":
            assert self.bin is not None
            env = {**CLEAN, "PATH": f"{self.bin}:{CLEAN.get('PATH', '')}"}
            subprocess.run(["sh", "-c", self.shell(argument)], cwd=self.inside("."), env=env, check=True,
                           timeout=900)
        elif keyword == "CMD":
            self.command = json.loads(argument)
        else:
            raise AssertionError(f"the Dockerfile uses {keyword}, which this test does not replay yet")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_dockerfile_installs_udr_and_its_command_runs_the_demo(tmp_path: Path) -> None:
    image = _Image(tmp_path / "image")
    for keyword, argument in _instructions((ROOT / "Dockerfile").read_text()):
        image.apply(keyword, argument)
    assert image.bin is not None and image.command[0] == "udr"
    assert not (tmp_path / "image" / "src").exists()  # the build context does not stay in the image

    run = subprocess.run([str(image.bin / image.command[0]), *image.command[1:]], cwd=image.inside("."),
                         env=CLEAN, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "udr" in run.stdout.lower() and run.stdout.count("\n") > 10
