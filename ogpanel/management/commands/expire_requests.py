"""python manage.py expire_requests: expire the requests for a second person that are past their time.

The panel's pages and the trip watch do this as they go; this is for a cron job where neither runs.
"""

from typing import Any

from django.core.management.base import BaseCommand

from ogpanel import approvals


class Command(BaseCommand):
    help = "Expire pending requests older than OGPANEL_APPROVAL_MINUTES, each with its audit event."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Expired {approvals.expire_due()} request(s).")
