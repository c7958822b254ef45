FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# WeasyPrint, which renders the signed case reports, needs Pango and at least one font.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Runtime packages only: the test and lint ones (requirements-dev.txt) stay out of the image.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN SECRET_KEY=build-only ALLOWED_HOSTS=localhost DJANGO_SETTINGS_MODULE=lumbar_platform.settings.production \
    python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 lumbar \
    && mkdir -p /app/var /app/media && chown -R lumbar /app/var /app/media
USER lumbar

EXPOSE 8000
CMD ["gunicorn", "lumbar_platform.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
