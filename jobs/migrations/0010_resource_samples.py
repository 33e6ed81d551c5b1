"""Resource samples of running jobs (CPU, memory, disk over time), one table with a foreign key to
jobs_job: SQLite does not remake jobs_job, so its name index needs nothing."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0009_analyses'),
    ]

    operations = [
        migrations.CreateModel(
            name='ResourceSample',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.BigIntegerField()),
                ('cpu', models.FloatField(null=True)),
                ('memory_mb', models.FloatField(null=True)),
                ('disk_mb', models.FloatField(null=True)),
                ('job', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='resource_samples', to='jobs.job')),
            ],
            options={
                'ordering': ['job', 'at'],
                'indexes': [models.Index(fields=['job', 'at'], name='jobs_resource_job_at_idx')],
            },
        ),
    ]
