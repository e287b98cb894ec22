"""The attempts no result answers yet, kept in their own small table ("outcome unknown").

Finding them in the events (an attempt with no event whose attempt_seq points at it) reads every
attempt: 355 ms at a million events. The table is filled here from the events already there;
from now on audit.py keeps it in step, in the transaction that appends the events.
"""

from django.db import migrations, models

# Also how to rebuild the table from the chain, after emptying it: it holds nothing else.
BACKFILL = """
INSERT INTO ogpanel_openattempt (seq)
SELECT attempt.seq FROM ogpanel_auditevent attempt
WHERE attempt.outcome = 'attempted'
  AND NOT EXISTS (SELECT 1 FROM ogpanel_auditevent result WHERE result.attempt_seq = attempt.seq)
"""


def _backfill(apps, schema_editor) -> None:
    schema_editor.execute(BACKFILL)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ANALYZE ogpanel_openattempt")  # so the planner knows the table is small


class Migration(migrations.Migration):
    dependencies = [("ogpanel", "0006_audit_speed")]

    operations = [
        migrations.CreateModel(
            name="OpenAttempt",
            fields=[("seq", models.BigIntegerField(primary_key=True, serialize=False))],
        ),
        migrations.RunPython(_backfill, migrations.RunPython.noop),
    ]
