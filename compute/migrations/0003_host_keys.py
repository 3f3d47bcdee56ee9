from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('compute', '0002_lifecycle'),
    ]

    operations = [
        migrations.AddField(
            model_name='clusterstate',
            name='host_keys',
            field=models.JSONField(blank=True, default=dict, help_text='SSH host keys den trusts for the cluster\'s hosts, trusted on first use: host (host:port when not 22) -> OpenSSH public key line.'),
        ),
    ]
