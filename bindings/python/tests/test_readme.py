"""The README's Python example runs as printed."""

import os
import re
import subprocess
import sys

from conftest import ROOT


def test_the_readme_python_example_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 1 and len(blocks[0].splitlines()) <= 15
    run = subprocess.run([sys.executable, "-c", blocks[0]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "submitted=2" in run.stdout and "audited_member" in run.stdout, run.stdout
