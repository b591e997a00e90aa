"""mint's series on a ``prometheus_client`` registry, so that a Python server's own
``/metrics`` carries them: no second port, no built-in endpoint needed.

    from prometheus_client import REGISTRY
    from mint_audit.prometheus import AuditorCollector
    REGISTRY.register(AuditorCollector(auditor))

Each scrape renders the auditor's registry (the same text its built-in endpoint would serve)
and hands the families to ``prometheus_client`` unchanged: names, types, help, labels and
values are the library's own.
"""

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = ["AuditorCollector"]


class AuditorCollector(Collector):
    """A collector reading one auditor's metrics at every scrape."""

    def __init__(self, auditor):
        self._auditor = auditor

    def collect(self):
        yield from text_string_to_metric_families(self._auditor.render_metrics())

    def describe(self):
        # Registration checks names for clashes with these families.
        return list(self.collect())
