"""The README, walked as a newcomer walks it: every shell command of "Using it" and the
Python snippet run as written, in order, against a real 3-broker cluster with both doors.

The only change made to the README's text is the addresses: the cluster runs on free
ports, so ``127.0.0.1:9192``..``9194`` (native) and ``9092``..``9094`` (Kafka) are mapped
onto its brokers' ports, and ``source .venv/bin/activate`` onto this test's environment.
A README command that fails, or a snippet that raises, fails this test with its output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import LocalCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def blocks(lang: str, section: str) -> list[str]:
    """The fenced ``lang`` blocks of the README's ``## section``, in order."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(rf"```{lang}\n(.*?)```", text[start:end if end > 0 else None], re.S)


def localize(text: str, cluster: LocalCluster) -> str:
    """The README's addresses mapped onto the test cluster's brokers."""
    for i, b in sorted(cluster.brokers.items()):
        text = text.replace(f"127.0.0.1:{9191 + i}", f"127.0.0.1:{b.port}")
        text = text.replace(f"127.0.0.1:{9091 + i}", f"127.0.0.1:{b.kafka_port}")
    return text.replace("source .venv/bin/activate", f"source {Path(sys.prefix) / 'bin' / 'activate'}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(root=tmp_path_factory.mktemp("readme"), n=3, kafka=True) as c:
        c.wait_ready()
        yield c


def run_shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRATA_BOOTSTRAP"}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_command_and_the_python_snippet_run_as_written(cluster: LocalCluster, tmp_path: Path) -> None:
    assert shutil.which("kcat"), "kcat is not installed: `make test` installs it (make compat-kcat)"
    shell = blocks("sh", "Using it")
    assert len(shell) >= 2, "the README's 'Using it' lost its shell examples"
    outputs = []
    for script in shell:
        res = run_shell(localize(script, cluster), tmp_path)
        assert res.returncode == 0, f"README commands failed:\n{script}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
        outputs.append(res.stdout)
    # What the commands promised: the two records consumed by strata, then by kcat (with
    # the record kcat produced, through the other door).
    # (Across partitions, so in no particular order.)
    assert "hello" in outputs[0] and "world" in outputs[0], outputs[0]
    assert sorted(re.findall(r"^(hello|world)$", outputs[1], re.M)) == ["hello", "hello", "world"], outputs[1]
    (snippet,) = blocks("python", "Using it")
    res = subprocess.run([sys.executable, "-c", localize(snippet, cluster)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, f"the README's Python snippet failed:\n{res.stderr}"
    assert re.search(r"^\d+ \d+ b'k1' b'hello'$", res.stdout, re.M), res.stdout
