"""The offline-testing guides as another team meets them: no checkout, no editable install.

The package is built into a wheel from this working tree (a copy of its packaging inputs,
so nothing is written into the tree), installed non-editable with its `testing` extra into
a fresh venv from the package registry, once for this module. That venv runs, as the
other team's own test files under `python -m pytest -W error` from yet another directory:
the cassette guide's examples and `test_offline_example.py`, with the two YAML files they
use vendored beside them; and the harness guide's examples (`mock_segmind()` running the
product page's script unchanged, `segmind_fake` forcing a 429, `segmind_gateway` running a
job), through the pytest plugin the wheel's entry point registers.

It needs the package registry (as `make` does to set up .venv); about 30-60 s, mostly pip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.outside import (
    guide_blocks,
    lay_out_harness_tests,
    lay_out_their_tests,
    left_running,
    run_their_tests,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).with_name("test_offline_example.py")
#: What a wheel is built from (pyproject's packages, package data, readme).
PACKAGING = ("pyproject.toml", "README.md", "client", "fakeserver", "proxy", "workflows")
#: In the project's `test` extra but needed neither to replay nor by the plugin: the
#: `testing` extra leaves them out.
NOT_FOR_REPLAY = ("hypothesis", "schemathesis", "segmind", "mypy", "ruff", "xdist")
PIP_SECONDS = 240
#: No PYTHONPATH or venv of ours leaks into theirs.
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    # This project's pip drives the fresh venv (`--python`): the venv needs no pip of its own.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=PIP_SECONDS,
    )  # fmt: skip
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def build_wheel(workdir: Path) -> Path:
    source = workdir / "source"
    source.mkdir()
    for name in PACKAGING:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(workdir / "dist"), str(source))
    (wheel,) = (workdir / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def their_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its `testing` extra, built once for this module."""
    workdir = tmp_path_factory.mktemp("outside")
    wheel = build_wheel(workdir)
    venv = workdir / "their-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip("--python", str(python), "install", "--quiet", "--no-compile", f"{wheel}[testing]")

    # The package came from the wheel, and the extra brought what replay and the plugin
    # need, no more.
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u, client, sys; print(client.__file__); "
         f"print([m for m in {NOT_FOR_REPLAY!r} if u.find_spec(m)])"],
        capture_output=True, text=True, check=True, cwd=workdir, env=CLEAN_ENV,
    )  # fmt: skip
    installed_at, extra_modules = probe.stdout.splitlines()
    assert installed_at.startswith(str(venv)), installed_at
    assert extra_modules == "[]"
    return python


@pytest.mark.install
@pytest.mark.timeout(2 * PIP_SECONDS + 120)
def test_another_team_replays_the_cassettes_with_only_the_testing_extra(
    their_python: Path, tmp_path: Path
) -> None:
    blocks = guide_blocks()
    files = {f"test_guide_example_{n}.py": block for n, block in enumerate(blocks)}
    files["test_segmind_offline.py"] = EXAMPLE.read_text()
    tests = lay_out_their_tests(tmp_path / "their-repo", files)
    done = run_their_tests(their_python, tests, cwd=tmp_path / "somewhere-else")
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    expected = sum(source.count("\ndef test_") for source in files.values())
    assert f"{expected} passed in" in done.stdout, printed
    assert "warning" not in printed.lower(), printed


@pytest.mark.install
@pytest.mark.timeout(2 * PIP_SECONDS + 120)
def test_another_team_runs_the_harness_guide_with_only_the_testing_extra(
    their_python: Path, tmp_path: Path
) -> None:
    tests, expected = lay_out_harness_tests(tmp_path / "their-repo")
    done = run_their_tests(their_python, tests, cwd=tmp_path / "somewhere-else")
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert f"{expected} passed in" in done.stdout, printed
    assert "warning" not in printed.lower(), printed
    # Every server their fixtures started (the fake, the gateway and its fake) is gone.
    assert left_running(their_python) == []
