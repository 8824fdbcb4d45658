# Consent text per list, erasure markers (GDPR), unsubscribe IP, confirmation-send claim, overview indexes.

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('lists', '0002_search_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='ErasedAddress',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('digest', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'verbose_name': 'erased address',
                'ordering': ['-created_at'],
            },
        ),
        migrations.AddField(
            model_name='mailinglist',
            name='consent_text',
            field=models.TextField(blank=True, default='I agree to receive email from this list. I can unsubscribe at any time with the link in every mail.', help_text='Shown next to the signup button and stored with each signup as the consent record.'),
        ),
        migrations.AddField(
            model_name='subscription',
            name='confirmation_sent_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='subscription',
            name='unsubscribe_ip',
            field=models.GenericIPAddressField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='mailinglist',
            name='accent_color',
            field=models.CharField(default='#2456d6', max_length=7, validators=[django.core.validators.RegexValidator('^#[0-9a-fA-F]{6}$', 'Use a colour such as #2456d6 (# and six hex digits).')]),
        ),
        migrations.AddIndex(
            model_name='subscription',
            index=models.Index(fields=['created_at'], name='subscription_created'),
        ),
        migrations.AddIndex(
            model_name='subscription',
            index=models.Index(condition=models.Q(('unsubscribed_at__isnull', False)), fields=['unsubscribed_at'], name='subscription_unsubscribed'),
        ),
    ]
