"""`switchyard demo` as a new user meets it: after its timeline it names the status page and
prints snippets to paste; the Python ones must run as printed (with the official SDKs) and be
answered through the gateway while the demo's primary keeps failing."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import Proc, _base_env

STATUS = re.compile(r"^Status page: (http://\S+/)")
PIP = re.compile(r"^  python3 -m pip install (.+?)\s+#")


def test_the_demo_names_its_status_page_and_its_python_snippets_run_as_printed(
    switchyard_bin: Path, e2e_dir: Path
):
    demo = Proc("demo", [str(switchyard_bin), "demo", "--listen", "127.0.0.1:0"], _base_env(), e2e_dir)
    try:
        status_url = demo.wait_for_line(STATUS, timeout=60).group(1)
        demo.wait_for_line(re.compile(r"^Ctrl-C to stop\."), timeout=10)
        out = demo.stdout_seen
        assert any(line.startswith(f"  status    {status_url}") for line in out), out[:8]

        page = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(status_url, timeout=5)
        assert page.status == 200 and b"Switchyard status" in page.read()

        pip = [m.group(1).split() for m in map(PIP.match, out) if m]
        assert pip == [["openai", "anthropic"]], out
        snippets = [line.strip() for line in out if line.startswith('  python3 -c "')]
        assert len(snippets) == 2, out
        openai_snippet, anthropic_snippet = snippets
        assert "from openai import OpenAI" in openai_snippet
        answers = []
        for snippet in snippets:
            argv = shlex.split(snippet)
            assert argv[:2] == ["python3", "-c"]
            # The tests' venv has exactly the SDKs the pip line installs.
            run = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            answers.append(run.stdout.strip())
        # The demo's primary answers 529 to everything by now: the fallback serves.
        assert answers == ["fallback-openai answered: Hello from fallback", "Hello from fallback"], answers
    finally:
        demo.stop()
