# syntax=docker/dockerfile:1
# The supportbot image: `docker build -t supportbot .`, then
#   docker run --env-file .env -v supportbot-data:/data supportbot
# (without a volume the SQLite file in /data goes when the container does). With
# SUPPORTBOT_DB set to a postgresql:// URL, /data only holds this instance's docs index.
# docker-compose.yml runs several instances on PostgreSQL and Redis.

# --- Builder: wheels for the project and everything it needs, PostgreSQL driver included.
# .dockerignore lets only pyproject.toml, README.md, LICENSE, bot/ and prompts/ in.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels '.[postgres]'

# --- Final: the installed wheels and a Python runtime; no compilers, no sources, no pip cache.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SUPPORTBOT_METRICS_PORT=9090

# A fixed uid, so a volume's owner is the same on every host and in every replica.
RUN groupadd --system --gid 10001 supportbot \
    && useradd --system --uid 10001 --gid supportbot --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin supportbot \
    && install -d -o supportbot -g supportbot -m 0750 /data

# The wheels are mounted for this one step, never copied, so they add nothing to the image.
# Installing by name from the wheel folder is what lets pip apply the [postgres] extra.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels 'supportbot[postgres]'

# Relative defaults land here: SUPPORTBOT_DB ./supportbot.db (SQLite) and
# SUPPORTBOT_KB_INDEX ./supportbot-kb.db (each instance's docs index beside PostgreSQL).
WORKDIR /data
USER supportbot

# 9090: /metrics and /healthz (SUPPORTBOT_METRICS_PORT); 3000: Slack's HTTP mode (PORT).
EXPOSE 9090 3000

# slim has no curl; urlopen raises on a refused connection or an error status, so exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${SUPPORTBOT_METRICS_PORT:-9090}/healthz', timeout=4)"

ENTRYPOINT ["supportbot"]
CMD ["run"]
