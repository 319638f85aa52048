"""A prometheus_client collector over an `AlertService`, for the worker's registry:

    from prometheus_client import REGISTRY
    REGISTRY.register(service.collector())
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

HELP = {
    "livemon_alerts_fired_total": "Alerts that went from pending to firing, by rule.",
    "livemon_cdn_failovers_total": "CDN failover commands issued, by room and direction.",
    "livemon_cdn_failover_decisions_total": "Failover decisions (taken, declined, pinned, unpinned).",
    "livemon_alert_notifications_total": "Notification attempts by receiver and outcome.",
    "livemon_alert_queue_depth": "Notifications waiting for their receiver.",
    "livemon_alerts_active": "Alerts currently pending or firing, by rule and state.",
}


class AlertCollector:
    def __init__(self, service):
        self.service = service

    def describe(self):
        return []          # values are read at scrape time; nothing to pre-register

    def collect(self):
        for name, samples in self.service.counters().items():
            labels = _label_names(name)
            family = CounterMetricFamily(name.removesuffix("_total"), HELP[name], labels=labels)
            for values, value in samples:
                family.add_metric([values[k] for k in labels], value)
            yield family
        for name, samples in self.service.gauges().items():
            labels = _label_names(name)
            family = GaugeMetricFamily(name, HELP[name], labels=labels)
            for values, value in samples:
                family.add_metric([values[k] for k in labels], value)
            yield family


def _label_names(name: str) -> list[str]:
    return {
        "livemon_alerts_fired_total": ["alert"],
        "livemon_cdn_failovers_total": ["room", "from_cdn", "to_cdn"],
        "livemon_cdn_failover_decisions_total": ["decision", "mode"],
        "livemon_alert_notifications_total": ["receiver", "outcome"],
        "livemon_alert_queue_depth": ["receiver"],
        "livemon_alerts_active": ["alert", "state"],
    }[name]
