from django.db import migrations, models


class Migration(migrations.Migration):
    """Credentials name their Kalshi account (whose rate budget they share) and its tier."""

    dependencies = [("ogpanel", "0021_policy_roles")]

    operations = [
        migrations.AddField(
            model_name="credential",
            name="account",
            field=models.CharField(
                blank=True,
                help_text="Credentials of one Kalshi account share its rate budget. "
                "Leave blank for the environment's account.",
                max_length=100,
                verbose_name="Kalshi account",
            ),
        ),
        migrations.AddField(
            model_name="credential",
            name="tier",
            field=models.CharField(
                blank=True,
                choices=[
                    ("basic", "Basic"),
                    ("advanced", "Advanced"),
                    ("expert", "Expert"),
                    ("premier", "Premier"),
                    ("paragon", "Paragon"),
                    ("prestige", "Prestige"),
                    ("prime", "Prime"),
                ],
                help_text="The account's tier, until the exchange reports its own. Blank: OGPANEL_KALSHI_TIER.",
                max_length=20,
                verbose_name="rate-limit tier",
            ),
        ),
    ]
