"""liveroom-monitor: real-time metrics, alerts and CDN failover for e-commerce live rooms."""

__version__ = "0.1.0"
