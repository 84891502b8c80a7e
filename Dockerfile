# The agentstream worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY connectors ./connectors
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV AGENTSTREAM_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["agentstream"]
CMD ["worker"]
