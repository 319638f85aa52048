# The monitor image: `livemon worker` by default; `livemon simulate` for the simulator profile.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md* ./
COPY monitor monitor
COPY agents agents
COPY dashboards dashboards
RUN pip install . && useradd --system --uid 10001 --home-dir /var/lib/livemon --create-home livemon
# Alert rules and the alerting service config are data read at start (--alerts-config).
COPY alerts alerts

USER livemon
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2)"]
ENTRYPOINT ["livemon"]
CMD ["worker", "--broker", "kafka:9092", "--web-host", "0.0.0.0", "--alerts-config", "/app/alerts/alerting.yml"]
