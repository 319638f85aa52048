"""Alert rules, the alert lifecycle, anomaly baselines, delivery, CDN failover and incidents.

See docs/ALERTING.md. The worker's entry point is `livemon.alerting.service.AlertService`.
"""

from livemon.alerting.evaluator import Evaluator, Transition
from livemon.alerting.failover import Decision, FailoverConfig, FailoverController
from livemon.alerting.rules import Rule, load_rules
from livemon.alerting.schema import ConfigError

__all__ = ["ConfigError", "Decision", "Evaluator", "FailoverConfig", "FailoverController", "Rule",
           "Transition", "load_rules"]
