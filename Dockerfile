# The monitor image: `livemon worker` by default; `livemon simulate` and `livemon alert-relay` in
# other services of docker-compose.yml, each with its own healthcheck there (the image runs
# several roles, so it declares none).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md* ./
COPY monitor monitor
COPY agents agents
COPY dashboards dashboards
# The default alert rules and configs are package data (livemon.alerts); /app/alerts stays for
# --alerts-config=/app/alerts/... and alert-relay's --config.
COPY alerts alerts
RUN pip install . && useradd --system --uid 10001 --home-dir /var/lib/livemon --create-home livemon

USER livemon
EXPOSE 6066
ENTRYPOINT ["livemon"]
CMD ["worker", "--broker", "kafka:9092", "--web-host", "0.0.0.0"]
