# One image for every Casebook process: `casebook api` (default), `casebook worker`,
# `casebook migrate`. docker-compose.yml picks the command per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CASEBOOK_API_HOST=0.0.0.0 \
    CASEBOOK_API_PORT=8000 \
    CASEBOOK_DATA_DIR=/var/lib/casebook

WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/casebook casebook \
    && mkdir -p /var/lib/casebook/ledger \
    && chown -R casebook:casebook /var/lib/casebook

USER casebook
WORKDIR /var/lib/casebook
EXPOSE 8000

CMD ["casebook", "api"]
