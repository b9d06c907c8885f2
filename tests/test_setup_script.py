"""scripts/setup.sh: it says what it installs while pip works, and the dev profile satisfies the runtime
one (`bash scripts/studio.sh` after `bash scripts/test.sh` installs nothing).

pip cannot run here (a fresh install downloads for minutes), so .venv/bin/python is a stand-in that
records what setup.sh asks of it and takes a moment for each pip call: the decisions are setup.sh's own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../calls.log"
case "$*" in *"pip install"*) echo "Collecting something (stand-in for pip)"; sleep "${PIP_SECONDS:-0}" ;; esac
exit 0
"""


@pytest.fixture
def repo(tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("the dev profile would install chromium with apt")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text(STAND_IN)
    (bin_ / "python").chmod(0o755)
    return tmp_path


def setup(repo: Path, profile: str, **env) -> tuple[str, list[str]]:
    log = repo / ".venv" / "calls.log"
    log.unlink(missing_ok=True)
    out = subprocess.run(["bash", "scripts/setup.sh", profile], cwd=repo, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout, log.read_text().splitlines() if log.exists() else []


def test_dev_profile_covers_runtime(repo):
    text, calls = setup(repo, "dev")
    assert [c for c in calls if "pip install" in c] == [
        "-m pip install --upgrade pip", "-m pip install torch==2.13.0", "-m pip install -r requirements-dev.txt",
        "-m pip install --no-deps -r requirements-nodeps.txt"]
    for line in ("[setup] 1/4: pip itself", "[setup] 2/4: torch 2.13.0", "[setup] 3/4: requirements-dev.txt (8 pinned packages, plus requirements.txt)",
                 "[setup] 4/4: requirements-nodeps.txt",
                 "Collecting something"):
        assert line in text, text
    text, calls = setup(repo, "runtime")  # scripts/studio.sh after scripts/test.sh
    assert calls == [] and "already has the runtime profile" in text, text
    text, calls = setup(repo, "dev")
    assert calls == []
    with open(repo / "requirements.txt", "a") as f:
        f.write("# changed\n")
    text, calls = setup(repo, "runtime")  # a changed requirements file installs again
    assert "-m pip install -r requirements.txt" in calls
    text, calls = setup(repo, "dev")  # the runtime stamp does not cover dev
    assert "-m pip install -r requirements-dev.txt" in calls


def test_a_quiet_pip_still_shows_that_it_works(repo):
    text, _ = setup(repo, "runtime", PIP_SECONDS="2.5", SETUP_HEARTBEAT="1")
    assert "[setup]   ... still working on 2/4: torch 2.13.0" in text, text
