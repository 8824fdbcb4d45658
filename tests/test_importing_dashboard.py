"""The import pages: upload → choose the columns → progress → summary; roles, limits; the ImportJob admin."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from lists.models import ImportJob, Subscriber
from tests.factories import MailingListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Weekly Letter")


def counts(job):
    return {k: getattr(job, k) for k in ("rows", "created", "updated", "skipped", "invalid")}


def upload(client, mailing_list, content=b"E-Mail,Name,Plan\nada@example.org,Ada,pro\nbad,Bob,free\n",
           name="people.csv", **fields):
    data = {"file": SimpleUploadedFile(name, content, content_type="text/csv"), "mode": "add", **fields}
    return client.post(reverse("lists:import_start", args=[mailing_list.pk]), data)


def test_editor_uploads_chooses_columns_and_sees_the_summary(bob_client, newsletter,
                                                             django_capture_on_commit_callbacks):
    # given an uploaded file
    response = upload(bob_client, newsletter, confirmed="on", tags="fair, vip")
    job = ImportJob.objects.get()
    detail = reverse("lists:import_detail", args=[job.pk])
    assert response.status_code == 302 and response["Location"] == detail
    assert (job.status, job.mapping, job.tags, job.confirmed, job.created_by.username) == (
        ImportJob.PENDING, {}, ["fair", "vip"], True, "bob")
    # the mapping page proposes columns
    page = bob_client.get(detail)
    assert "Choose the columns of people.csv" in page.text
    assert '<option value="attribute" selected>Attribute</option>' in page.text
    # when the columns are chosen, the import runs
    with django_capture_on_commit_callbacks(execute=True):
        response = bob_client.post(detail, {"target-0": "email", "target-1": "name", "target-2": "attribute",
                                            "key-2": "tier"})
    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.status, job.mapping) == (ImportJob.DONE, {"E-Mail": "email", "Name": "name",
                                                          "Plan": "attributes.tier"})
    assert counts(job) == {"rows": 2, "created": 1, "updated": 0, "skipped": 0, "invalid": 1}
    assert Subscriber.objects.get().attributes == {"tier": "pro"}
    assert not (Path(settings.MEDIA_ROOT) / job.file).exists()  # the upload is gone once imported
    # then the page shows the summary, without polling
    partial = bob_client.get(detail, HTTP_HX_REQUEST="true")
    assert "Added to the list" in partial.text and "hx-trigger" not in partial.text
    assert "<td>3</td><td>bad</td><td>invalid email address</td>" in partial.text
    report = bob_client.get(reverse("lists:import_errors", args=[job.pk]))
    assert report["Content-Disposition"] == f'attachment; filename="import-{job.pk}-problems.csv"'
    assert b"".join(report.streaming_content).decode() == "line,email,reason\r\n3,bad,invalid email address\r\n"


def test_the_progress_partial_polls_while_the_import_runs(bob_client, newsletter):
    job = ImportJob.objects.create(mailing_list=newsletter, file="imports/x.csv", mapping={"email": "email"},
                                   status=ImportJob.RUNNING, total_bytes=200, processed_bytes=100, rows=1234)

    partial = bob_client.get(reverse("lists:import_detail", args=[job.pk]), HTTP_HX_REQUEST="true")

    assert 'hx-trigger="every 1s"' in partial.text
    assert '<progress max="100" value="50">' in partial.text
    assert "50% of the file read · 1234 rows" in partial.text
    assert "<html" not in partial.text


def test_mapping_without_an_email_column_is_refused(bob_client, newsletter):
    upload(bob_client, newsletter)
    job = ImportJob.objects.get()

    page = bob_client.post(reverse("lists:import_detail", args=[job.pk]), {"target-0": "name"})

    assert "Choose the column that holds the email addresses." in page.text
    job.refresh_from_db()
    assert (job.status, job.mapping) == (ImportJob.PENDING, {})


def test_cancelling_deletes_the_job_and_the_file(bob_client, newsletter):
    upload(bob_client, newsletter)
    job = ImportJob.objects.get()
    path = Path(settings.MEDIA_ROOT) / job.file

    response = bob_client.post(reverse("lists:import_detail", args=[job.pk]), {"cancel": "1"})

    assert response["Location"] == reverse("lists:import_start", args=[newsletter.pk])
    assert not ImportJob.objects.exists() and not path.exists()


def test_a_spreadsheet_upload_is_refused_with_advice(bob_client, newsletter):
    response = upload(bob_client, newsletter, content=b"PK\x03\x04binary", name="people.xlsx")

    assert response.status_code == 200
    assert "In your spreadsheet choose File › Save as (or Download) › CSV" in response.text
    assert not ImportJob.objects.exists()


def test_viewers_and_people_without_a_role_cannot_import(victor_client, mallory_client, client, newsletter):
    start = reverse("lists:import_start", args=[newsletter.pk])
    job = ImportJob.objects.create(mailing_list=newsletter, file="imports/x.csv")
    for c in (victor_client, mallory_client):
        assert c.get(start).status_code == 403
        assert upload(c, newsletter).status_code == 403
        assert c.get(reverse("lists:import_detail", args=[job.pk])).status_code == 403
    assert client.get(start)["Location"].startswith("/accounts/login/")
    assert list(ImportJob.objects.values_list("pk", flat=True)) == [job.pk]


def test_uploads_are_rate_limited(bob_client, newsletter, monkeypatch):
    from lists import views_transfer

    monkeypatch.setattr(views_transfer, "UPLOADS_PER_HOUR", 1)
    upload(bob_client, newsletter)
    response = upload(bob_client, newsletter)

    assert "You uploaded 1 files in the last hour. Wait a while and try again." in response.text
    assert ImportJob.objects.count() == 1


def test_admin_runs_a_failed_import_again(admin_client, newsletter, tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "people.csv"
    path.write_text("email\nada@example.org\n")
    job = ImportJob.objects.create(mailing_list=newsletter, file=str(path), mapping={"email": "email"},
                                   status=ImportJob.FAILED, failure="The worker died.", confirmed=True)
    done = ImportJob.objects.create(mailing_list=newsletter, file=str(path), status=ImportJob.DONE, created=5)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:lists_importjob_changelist"),
                          {"action": "run_again", "_selected_action": [job.pk, done.pk]})

    job.refresh_from_db()
    done.refresh_from_db()
    assert (job.status, job.failure, job.created) == (ImportJob.DONE, "", 1)
    assert (done.status, done.created) == (ImportJob.DONE, 5)


def test_the_import_admin_lists_and_searches_jobs(admin_client, newsletter):
    ImportJob.objects.create(mailing_list=newsletter, file="imports/x.csv", original_name="people.csv")
    url = reverse("admin:lists_importjob_changelist")
    assert "people.csv" in admin_client.get(url, {"q": "people"}).text
    assert admin_client.get(url, {"status__exact": "failed"}).status_code == 200
