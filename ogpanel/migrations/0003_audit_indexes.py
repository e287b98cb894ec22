from django.db import migrations, models


class Migration(migrations.Migration):
    """Indexes for the review page: each filter column followed by -seq, so a filtered, keyset-paged
    page (WHERE column = x AND seq < before ORDER BY seq DESC LIMIT n) reads only the rows it shows."""

    dependencies = [("ogpanel", "0002_audit_append_only")]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_username", "-seq"], name="ogpanel_aud_actor_u_fa3054_idx"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["subaccount", "-seq"], name="ogpanel_aud_subacco_b67624_idx"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["order_group_id", "-seq"], name="ogpanel_aud_order_g_c4a4e1_idx"),
        ),
    ]
