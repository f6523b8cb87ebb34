# The connector as a container: slim Python, runtime dependencies only, a non-root user.
#   docker build -t connector .
#   docker run -p 3000:3000 -e BTP_PEER_ALICE_SECRET=... \
#     -v "$PWD/connector.yaml:/etc/connector/connector.yaml:ro" \
#     -e CONNECTOR_CONFIG=/etc/connector/connector.yaml connector

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin connector \
    && mkdir -p /etc/connector /var/lib/connector \
    && chown 10001:10001 /var/lib/connector
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
# The default store (store.url sqlite:///connector.sqlite3) is relative to the working directory.
WORKDIR /var/lib/connector
VOLUME ["/var/lib/connector"]
ENV PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json \
    BTP_SERVER_PORT=3000
EXPOSE 3000
# Liveness on the BTP port itself (plain HTTP GET before any WebSocket upgrade).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('BTP_SERVER_PORT', '3000'), timeout=2)"]
# The connector handles SIGTERM itself (it is PID 1 here): drain, close with 1000, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["connector"]
