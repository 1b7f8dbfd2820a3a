# One image for every TradeBridge service; the command picks the service (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY gateway ./gateway
COPY execution ./execution
COPY events ./events
COPY pricefeed ./pricefeed
COPY reconciliation ./reconciliation
COPY shared ./shared
COPY migrations ./migrations
COPY tradebridge ./tradebridge
RUN pip install . && if [ -f gateway/web/package.json ]; then cd gateway/web && npm install --omit=dev --no-audit --no-fund; fi
RUN useradd --create-home tradebridge
USER tradebridge
ENV HOST=0.0.0.0 PORT=8000 TRADEBRIDGE_ENV=production
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)" || exit 1
CMD ["tradebridge", "gateway"]
