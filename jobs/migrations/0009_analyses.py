"""Analyses (runs of workflows) and the stage jobs' link to theirs.

Adding a foreign key makes SQLite remake jobs_job, which drops the name index's triggers: they are
installed again (jobs.namesearch.install_sqlite).
"""

import django.db.models.deletion
import projects.models
from django.conf import settings
from django.db import migrations, models

from jobs import namesearch


def reinstall_name_index(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        namesearch.install_sqlite(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0008_job_launcher_scopes'),
        ('projects', '0004_notifications'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='stage',
            field=models.CharField(blank=True, default='', max_length=128),
        ),
        migrations.CreateModel(
            name='Analysis',
            fields=[
                ('id', models.CharField(max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=255)),
                ('executable', models.CharField(max_length=40)),
                ('executable_name', models.CharField(blank=True, default='', max_length=255)),
                ('stages', models.JSONField(default=list)),
                ('folder', models.CharField(default='/', max_length=1024)),
                ('state', models.CharField(choices=[('in_progress', 'In Progress'), ('partially_failed', 'Partially Failed'), ('done', 'Done'), ('failed', 'Failed'), ('terminating', 'Terminating'), ('terminated', 'Terminated')], default='in_progress', max_length=20)),
                ('input', models.JSONField(default=dict)),
                ('original_input', models.JSONField(default=dict)),
                ('run_input', models.JSONField(default=dict)),
                ('output', models.JSONField(null=True)),
                ('depends_on', models.JSONField(default=list)),
                ('failure_reason', models.CharField(blank=True, default='', max_length=64)),
                ('failure_message', models.TextField(blank=True, default='')),
                ('priority', models.CharField(default='normal', max_length=10)),
                ('tags', models.JSONField(default=list)),
                ('properties', models.JSONField(default=dict)),
                ('details', models.JSONField(default=dict)),
                ('transitions', models.JSONField(default=list)),
                ('created', models.BigIntegerField(default=projects.models.now_ms)),
                ('modified', models.BigIntegerField(default=projects.models.now_ms)),
                ('failure_from', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='jobs.job')),
                ('launched_by', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='launched_analyses', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='analyses', to='projects.container')),
                ('workflow', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='projects.dataobject')),
            ],
        ),
        migrations.AddField(
            model_name='job',
            name='analysis',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='stage_jobs', to='jobs.analysis'),
        ),
        migrations.AddIndex(
            model_name='analysis',
            index=models.Index(fields=['project', '-created', '-id'], name='jobs_analysis_project_idx'),
        ),
        migrations.AddIndex(
            model_name='analysis',
            index=models.Index(fields=['launched_by', '-created', '-id'], name='jobs_analysis_launcher_idx'),
        ),
        migrations.RunPython(reinstall_name_index, migrations.RunPython.noop),
    ]
