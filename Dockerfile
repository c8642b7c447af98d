# syntax=docker/dockerfile:1
# The SmartMeter server side in one image: `smartmeter worker`, `serve`, `mqtt`, `alerts`, `reprocess` (and a Dask
# worker for reprocess: `dask worker tcp://scheduler:8786`). compose.yaml runs it with PostgreSQL and mosquitto;
# install_server.md, "Containers". Secrets come from /run/secrets via SMARTMETER_<NAME>_FILE, never from the image.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY smartmeter/ smartmeter/
COPY ocr/ ocr/
COPY raspi/ raspi/
COPY server/ server/
COPY backup_dropbox/ backup_dropbox/
COPY simulator/ simulator/
RUN python -m venv /opt/smartmeter \
    && /opt/smartmeter/bin/pip install --no-compile '.[server,fleet]'

FROM python:3.11-slim-bookworm
# tesseract: the optional second digit reader (ocr.reader.engine: tesseract); the CNN needs nothing from apt.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr=5.3.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/smartmeter --shell /usr/sbin/nologin smartmeter
COPY --from=build /opt/smartmeter /opt/smartmeter
ENV PATH=/opt/smartmeter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SMARTMETER_CONFIG=/etc/smartmeter/smartmeter.yaml
USER 10001
WORKDIR /var/lib/smartmeter
EXPOSE 8080
# SIGTERM stops every command cleanly (smartmeter.lifecycle); tini is not needed for one process per container.
STOPSIGNAL SIGTERM
ENTRYPOINT ["smartmeter"]
CMD ["worker"]
