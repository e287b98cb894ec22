"""The audit log at a million events (benchmarks/audit_scale.py; docs/performance.md, "Audit at scale").

Free-text search, on PostgreSQL: a trigram index (pg_trgm) on each column the review page
searches, on exactly the expression Django's icontains compares, UPPER(column::text). A search
for a string that few events contain then reads those indexes instead of every event (~1 s at
a million events, now a few milliseconds). SQLite gets none: there, search stays a scan.
Creating the extension needs the CREATE privilege on the database (pg_trgm is a trusted
extension from PostgreSQL 13); building the indexes blocks audit appends while it runs, about
20 s for a million events.

The single-column indexes on actor_username, action, subaccount, order_group_id and outcome go:
the (column, -seq) indexes answer the same lookups, and every append kept both up to date.
"""

from django.db import migrations, models

SEARCHED = ("actor_username", "action", "order_group_id", "reason", "error", "params")


def _trigram_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("ogpanel", "AuditEvent")._meta.db_table)
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in SEARCHED:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS ogpanel_audit_search_{column} ON {table} "
            f"USING gin (UPPER({schema_editor.quote_name(column)}::text) gin_trgm_ops)"
        )
    # The planner needs statistics on the new expressions to tell a rare search string (use the
    # indexes) from a common one (walk seq backwards until a page is full); autovacuum would
    # gather them only after many more appends.
    schema_editor.execute(f"ANALYZE {table}")


def _drop_trigram_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCHED:
        schema_editor.execute(f"DROP INDEX IF EXISTS ogpanel_audit_search_{column}")


class Migration(migrations.Migration):
    dependencies = [("ogpanel", "0005_trip_watch")]

    operations = [
        migrations.RunPython(_trigram_indexes, _drop_trigram_indexes),
        migrations.AlterField(model_name="auditevent", name="actor_username", field=models.CharField(max_length=150)),
        migrations.AlterField(model_name="auditevent", name="action", field=models.CharField(max_length=50)),
        migrations.AlterField(
            model_name="auditevent", name="subaccount", field=models.PositiveSmallIntegerField(blank=True, null=True)
        ),
        migrations.AlterField(
            model_name="auditevent", name="order_group_id", field=models.CharField(blank=True, max_length=100)
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("attempted", "Attempted"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("denied", "Denied"),
                    ("observed", "Observed"),
                ],
                max_length=20,
            ),
        ),
    ]
