# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DATA_DIR=/data
WORKDIR /app

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# Static files are collected (hashed, compressed) at build time and served by whitenoise.
ENV STATIC_ROOT=/app/static-collected
RUN SECRET_KEY=build-only-not-a-secret-0123456789abcdef SITE_URL=https://build.invalid \
    ANYMAIL_WEBHOOK_SECRET=build:only-not-a-secret \
    ALLOWED_HOSTS=build.invalid DATA_DIR=/tmp/build python manage.py collectstatic --noinput \
    && rm -rf /tmp/build

USER app
EXPOSE 8000
CMD ["gunicorn", "autoresponder.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--forwarded-allow-ips", "*", "--access-logfile", "-"]
