"""mint's series through prometheus_client's registry, as a Python server's /metrics serves them."""

import shutil
import subprocess

from conftest import random_taps, require
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mint_audit
from mint_audit.prometheus import AuditorCollector


def test_the_collector_carries_the_auditors_series_and_promtool_accepts_them(vanilla_config):
    with mint_audit.Auditor(vanilla_config) as auditor:
        auditor.submit(list(range(6)), random_taps(6))
        auditor.close()
        registry = CollectorRegistry()
        registry.register(AuditorCollector(auditor))
        text = generate_latest(registry).decode()
        stats = auditor.stats()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    submitted = sum(s.value for s in families["mint_samples_submitted"].samples if s.name.endswith("_total"))
    audited = sum(s.value for s in families["mint_samples_audited"].samples if s.name.endswith("_total"))
    assert submitted == stats.submitted == 6
    assert audited == stats.audited == 6
    assert "fmnist-memorizing" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        require("promtool (Debian's prometheus package)")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
