"""On PostgreSQL the audit table refuses UPDATE, DELETE and TRUNCATE, whoever asks.

Triggers raise an exception, so not even a bug, a stray shell or the admin can rewrite history
through the panel's own database role. Only a superuser can get around them (by dropping the
triggers or setting `session_replication_role`), and that is what `verify_audit` is for.

A later migration that must rewrite existing rows (a backfill, say) has to drop and recreate
these triggers around its change, as a deliberate, visible step.

SQLite has no such triggers here: it is for development and tests, and the hash chain still
shows any change there.
"""

from django.db import migrations

FUNCTION = "ogpanel_audit_append_only"

CREATE = """
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ogpanel_audit_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER ogpanel_audit_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""

DROP = """
DROP TRIGGER IF EXISTS ogpanel_audit_no_truncate ON {table};
DROP TRIGGER IF EXISTS ogpanel_audit_no_update_delete ON {table};
DROP FUNCTION IF EXISTS {function}();
"""


def _run(template: str):
    def operation(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(apps.get_model("ogpanel", "AuditEvent")._meta.db_table)
        # params=None: the SQL is sent as is, its "%" are PL/pgSQL's, not placeholders.
        schema_editor.execute(template.format(table=table, function=FUNCTION), params=None)

    return operation


class Migration(migrations.Migration):
    dependencies = [("ogpanel", "0001_initial")]
    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
