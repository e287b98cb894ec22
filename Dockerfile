# The panel under gunicorn. Static files are collected at build time and served by WhiteNoise.
FROM python:3.13-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
# The lock: every package pinned with its hashes (make lock); pip refuses anything else.
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY . .
RUN SECRET_KEY=collectstatic-only OGPANEL_ENCRYPTION_KEYS= python manage.py collectstatic --no-input
RUN useradd --system --home /app ogpanel && install -d -o ogpanel /var/lib/ogpanel/checkpoints
USER ogpanel
EXPOSE 8000
# gunicorn.conf.py adds the metrics directory the workers share, and the access log (plain logs only).
CMD ["gunicorn", "ogpanel.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--timeout", "60"]
