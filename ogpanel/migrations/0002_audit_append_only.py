from django.db import migrations


class Migration(migrations.Migration):
    """Placeholder, filled in by the audit work: on PostgreSQL the audit table refuses UPDATE, DELETE, TRUNCATE."""

    dependencies = [("ogpanel", "0001_initial")]
    operations: list = []
