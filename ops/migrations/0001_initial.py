from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = []  # type: ignore[var-annotated]

    operations = [
        migrations.CreateModel(
            name="TaskRunStat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("task", models.CharField(max_length=200)),
                ("outcome", models.CharField(max_length=16)),
                ("bucket", models.PositiveSmallIntegerField()),
                ("count", models.BigIntegerField(default=0)),
                ("seconds", models.FloatField(default=0.0)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("task", "outcome", "bucket"),
                                                        name="ops_taskrunstat_unique")],
            },
        ),
    ]
