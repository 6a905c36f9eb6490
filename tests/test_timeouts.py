"""Every test has a timeout (pytest-timeout): a hang fails instead of stalling CI."""

import subprocess
import sys
import tomllib

from tests.conftest import ROOT


def test_the_suite_has_a_default_timeout_and_the_plugin_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["pytest"]["ini_options"]["timeout"] == 300
    assert "pytest-timeout==2.4.0" in project["project"]["optional-dependencies"]["dev"]
    assert "pytest-timeout==2.4.0" in (ROOT / "requirements.lock").read_text().splitlines()


def test_a_hanging_test_fails_on_its_timeout(tmp_path):
    (tmp_path / "test_hang.py").write_text(
        "import time\nimport pytest\n\n\n@pytest.mark.timeout(2)\ndef test_hang():\n    time.sleep(600)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_hang.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "Timeout (>2.0s)" in proc.stdout and "1 failed" in proc.stdout, proc.stdout[-2000:]
