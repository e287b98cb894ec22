from django.apps import AppConfig
from django.conf import settings


class OgpanelConfig(AppConfig):
    name = "ogpanel"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here rather than in settings: every process (gunicorn workers, the watcher, manage.py) passes by.
        if settings.SENTRY_DSN:
            from ogpanel import error_reports

            error_reports.init(settings.SENTRY_DSN, environment=settings.SENTRY_ENVIRONMENT)
