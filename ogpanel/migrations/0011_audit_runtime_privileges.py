"""On PostgreSQL, every role but the audit table's owner may at most SELECT and INSERT it.

Migration 0002's triggers refuse UPDATE, DELETE and TRUNCATE, but the table's owner (and any
superuser) can disable or drop them: `ALTER TABLE ... DISABLE TRIGGER` and `DROP TRIGGER` need
only ownership. So migrations run as the owner, and the panel and the watcher connect as another
role (README, Production): deploy/postgres/10-ogpanel-runtime-role.sh creates it and grants it
what the panel needs on every table, by default privileges for tables created later. Here, on
the audit table, UPDATE, DELETE, TRUNCATE, TRIGGER and REFERENCES are taken back from every role
that holds them except the owner, whatever granted them; ALTER and DROP were never theirs.

Nothing is restored on the way back: privileges taken for safety stay taken.
"""

from django.db import migrations

REVOKE = """
DO $$
DECLARE
    holder oid;
BEGIN
    FOR holder IN
        SELECT DISTINCT acl.grantee
        FROM pg_class c, aclexplode(c.relacl) acl
        WHERE c.oid = '{table}'::regclass
          AND acl.grantee <> c.relowner
          AND acl.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES')
    LOOP
        EXECUTE format(
            'REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {table} FROM %s',
            CASE WHEN holder = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(holder)) END
        );
    END LOOP;
END
$$;
"""


def revoke(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("ogpanel", "AuditEvent")._meta.db_table)
    # params=None: the SQL is sent as is, its "%s" is PL/pgSQL's format(), not a placeholder.
    schema_editor.execute(REVOKE.format(table=table), params=None)


class Migration(migrations.Migration):
    dependencies = [("ogpanel", "0009_sweeps")]
    operations = [migrations.RunPython(revoke, migrations.RunPython.noop)]
