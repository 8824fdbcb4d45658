"""CSV imports: modes, mapping, dedupe, problem report, refusals, confirmations, both engines, the command."""

import csv
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from lists import importing, importing_csv
from lists.importing_csv import CSVFileError, auto_mapping, sniff, validate_mapping
from lists.models import ErasedAddress, ImportJob, MailingList, Subscriber, Subscription, Suppression, Tag
from lists.services import erased_digest
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Weekly Letter")


@pytest.fixture(params=["copy", "portable"])
def engine(request):
    """Every import test runs on the Postgres COPY path and on the portable ORM path."""
    return request.param


@pytest.fixture
def write_csv(tmp_path):
    def write(text, name="people.csv", encoding="utf-8"):
        path = tmp_path / name
        path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
        return path

    return write


def import_file(path, mailing_list, engine, **fields):
    job = ImportJob.objects.create(mailing_list=mailing_list, file=str(path), original_name=path.name, **fields)
    importing.run_import(job, portable=engine == "portable")
    job.refresh_from_db()
    return job


def counts(job):
    return {k: getattr(job, k) for k in ("rows", "created", "updated", "skipped", "invalid")}


def problems(job):
    return [(p["line"], p["reason"]) for p in job.errors]


def member(email, mailing_list):
    return Subscription.objects.select_related("subscriber").get(
        subscriber__email__iexact=email, mailing_list=mailing_list
    )


# --- Mapping and sniffing --------------------------------------------------------------------


def test_auto_mapping_recognises_common_headers_and_keeps_the_rest_as_attributes():
    header = ["E-Mail", "First Name", "Last_Name", "Time zone", "Plan", "Sign-up Source", "  "]
    assert auto_mapping(header) == {
        "E-Mail": "email", "First Name": "name", "Last_Name": "name", "Time zone": "time_zone",
        "Plan": "attributes.plan", "Sign-up Source": "attributes.sign-up_source", "  ": "",
    }


def test_auto_mapping_prefers_a_full_name_column_over_first_and_last():
    assert auto_mapping(["email", "Full name", "First name"]) == {
        "email": "email", "Full name": "name", "First name": "attributes.first_name",
    }


def test_validate_mapping_explains_every_mistake():
    header = ["a", "b", "c"]
    assert validate_mapping(header, {"a": "name", "b": "attributes.x", "c": "attributes.x", "z": "email"}) == [
        "There is no column “z” in the file.",
        "Choose the column that holds the email addresses.",
        "Columns b, c all go to attributes.x; give each its own attribute name.",
    ]
    assert validate_mapping(header, {"a": "email", "b": "email", "c": "phone"}) == [
        "“phone” is not a subscriber field; use email, name, time_zone or attributes.<name>.",
        "Only one column can be email (now: a, b).",
    ]


@pytest.mark.parametrize("text, delimiter", [
    ("email,name\na@example.org,Ada\n", ","),
    ("email;name\na@example.org;Ada\n", ";"),
    ("email\tname\na@example.org\tAda\n", "\t"),
    ("email\na@example.org\n", ","),
])
def test_sniff_detects_the_delimiter(write_csv, text, delimiter):
    assert sniff(write_csv(text)).delimiter == delimiter


def test_sniff_reads_utf8_with_bom_and_falls_back_to_latin1_with_a_warning(write_csv):
    bom = sniff(write_csv(b"\xef\xbb\xbfemail,name\na@example.org,J\xc3\xbcrgen\n"))
    assert (bom.encoding, bom.header, bom.sample, bom.warning) == ("utf-8-sig", ["email", "name"],
                                                                    [["a@example.org", "Jürgen"]], "")
    latin = sniff(write_csv("email,name\na@example.org,Jürgen\n", encoding="latin-1"))
    assert (latin.encoding, latin.sample, latin.warning) == ("latin-1", [["a@example.org", "Jürgen"]],
                                                             importing_csv.LATIN1_WARNING)


@pytest.mark.parametrize("content", [b"PK\x03\x04rest-of-a-zip", b"email\x00name\x00\n", b"%PDF-1.7"])
def test_sniff_refuses_binary_files(write_csv, content):
    with pytest.raises(CSVFileError, match="This is not a CSV file"):
        sniff(write_csv(content))


def test_sniff_refuses_empty_files_and_repeated_column_names(write_csv):
    with pytest.raises(CSVFileError, match="The file is empty"):
        sniff(write_csv("  \n"))
    with pytest.raises(CSVFileError, match="Two columns are called “email”"):
        sniff(write_csv("email,name,email\n"))


# --- Modes ---------------------------------------------------------------------------------------


def test_add_creates_confirmed_subscriptions_with_a_consent_record(write_csv, newsletter, engine, bob):
    path = write_csv("Email,First name,Last name,Time zone,Plan\n"
                     "ada@EXAMPLE.org,Ada,Lovelace,Europe/London,pro\n"
                     "grace@example.org,Grace,,,\n")
    job = ImportJob.objects.create(mailing_list=newsletter, file=str(path), original_name="people.csv",
                                   confirmed=True, created_by=bob)
    importing.run_import(job, portable=engine == "portable")

    job.refresh_from_db()
    assert (job.status, counts(job)) == (ImportJob.DONE, {"rows": 2, "created": 2, "updated": 0, "skipped": 0,
                                                           "invalid": 0})
    assert (job.errors, job.error_report, job.percent) == ([], "", 100)
    ada = member("ada@example.org", newsletter)
    assert (ada.subscriber.email, ada.subscriber.name, ada.subscriber.time_zone, ada.subscriber.attributes) == (
        "ada@example.org", "Ada Lovelace", "Europe/London", {"plan": "pro"})
    assert (ada.status, ada.source, ada.consent_form) == (Subscription.CONFIRMED, Subscription.IMPORT,
                                                          f"CSV import #{job.pk}")
    assert ada.consent_text == ("Imported from people.csv by bob, who confirmed that these people agreed to "
                                "receive mail from this list.")
    assert ada.confirmed_at is not None and ada.consent_at is not None
    grace = member("grace@example.org", newsletter).subscriber
    assert (grace.name, grace.time_zone, grace.attributes) == ("Grace", "", {})
    assert not Path(job.file).exists() or Path(job.file).is_absolute()


def test_add_skips_members_already_on_the_list_and_leaves_them_as_they_are(write_csv, newsletter, engine):
    on_list = SubscriptionFactory(subscriber__email="ada@example.org", subscriber__name="Old Ada",
                                  mailing_list=newsletter, status=Subscription.UNSUBSCRIBED)
    elsewhere = SubscriberFactory(email="grace@example.org", name="Old Grace")
    path = write_csv("email,name\nADA@example.org,New Ada\ngrace@example.org,New Grace\n")

    job = import_file(path, newsletter, engine, confirmed=True)

    assert counts(job) == {"rows": 2, "created": 1, "updated": 0, "skipped": 1, "invalid": 0}
    assert problems(job) == [(2, "already on the list")]
    on_list.refresh_from_db()
    assert (on_list.status, on_list.subscriber.name) == (Subscription.UNSUBSCRIBED, "Old Ada")
    elsewhere.refresh_from_db()
    assert elsewhere.name == "Old Grace"  # add never changes a known subscriber…
    assert member("grace@example.org", newsletter).status == Subscription.CONFIRMED  # …but subscribes them


def test_upsert_overwrites_filled_cells_keeps_empty_ones_and_merges_attributes(write_csv, newsletter, engine):
    ada = SubscriberFactory(email="ada@example.org", name="Ada", time_zone="UTC", attributes={"a": "1", "b": "2"})
    SubscriptionFactory(subscriber=ada, mailing_list=newsletter, status=Subscription.CONFIRMED)
    path = write_csv("email,name,tz,b,c\nada@example.org,,Europe/Berlin,3,4\nnew@example.org,New,,,\n")

    job = import_file(path, newsletter, engine, mode=ImportJob.UPSERT, confirmed=True)

    assert counts(job) == {"rows": 2, "created": 1, "updated": 1, "skipped": 0, "invalid": 0}
    ada.refresh_from_db()
    assert (ada.name, ada.time_zone, ada.attributes) == ("Ada", "Europe/Berlin", {"a": "1", "b": "3", "c": "4"})
    assert member("ada@example.org", newsletter).consent_form == ""  # a confirmed membership stays as it was


def test_upsert_renews_unconfirmed_signups_but_never_revives_an_unsubscribe(write_csv, newsletter, engine):
    waiting = SubscriptionFactory(subscriber__email="wait@example.org", mailing_list=newsletter,
                                  status=Subscription.UNCONFIRMED)
    gone = SubscriptionFactory(subscriber__email="gone@example.org", mailing_list=newsletter,
                               status=Subscription.UNSUBSCRIBED)
    path = write_csv("email\nwait@example.org\ngone@example.org\n")

    job = import_file(path, newsletter, engine, mode=ImportJob.UPSERT, confirmed=True)

    assert counts(job) == {"rows": 2, "created": 0, "updated": 2, "skipped": 0, "invalid": 0}
    waiting.refresh_from_db()
    gone.refresh_from_db()
    assert (waiting.status, waiting.consent_form, waiting.source) == (
        Subscription.CONFIRMED, f"CSV import #{job.pk}", Subscription.IMPORT)
    assert (gone.status, gone.consent_form) == (Subscription.UNSUBSCRIBED, "")


def test_unsubscribe_mode_unsubscribes_from_the_list_and_says_why_others_were_skipped(write_csv, newsletter,
                                                                                    engine):
    other = MailingListFactory()
    subscribed = SubscriptionFactory(subscriber__email="in@example.org", mailing_list=newsletter)
    elsewhere = SubscriptionFactory(subscriber__email="in@example.org".replace("in", "out"), mailing_list=other)
    SubscriptionFactory(subscriber__email="done@example.org", mailing_list=newsletter,
                        status=Subscription.UNSUBSCRIBED)
    path = write_csv("email\nIN@example.org\nout@example.org\ndone@example.org\nnobody@example.org\n")

    job = import_file(path, newsletter, engine, mode=ImportJob.UNSUBSCRIBE)

    assert counts(job) == {"rows": 4, "created": 0, "updated": 1, "skipped": 3, "invalid": 0}
    assert problems(job) == [(3, "not on this list"), (4, "already unsubscribed"), (5, "not a subscriber")]
    subscribed.refresh_from_db()
    assert (subscribed.status, subscribed.unsubscribe_reason) == (
        Subscription.UNSUBSCRIBED, f"Unsubscribed by CSV import #{job.pk} (people.csv)")
    assert subscribed.unsubscribed_at is not None
    elsewhere.refresh_from_db()
    assert elsewhere.status == Subscription.CONFIRMED


def test_unsubscribe_mode_without_a_list_unsubscribes_everywhere(write_csv, engine):
    first, second = MailingListFactory(), MailingListFactory()
    ada = SubscriberFactory(email="ada@example.org")
    for mailing_list in (first, second):
        SubscriptionFactory(subscriber=ada, mailing_list=mailing_list)

    job = import_file(write_csv("email\nada@example.org\nnone@example.org\n"), None, engine,
                      mode=ImportJob.UNSUBSCRIBE)

    assert counts(job) == {"rows": 2, "created": 0, "updated": 1, "skipped": 1, "invalid": 0}
    assert problems(job) == [(3, "not a subscriber")]
    assert set(ada.subscriptions.values_list("status", flat=True)) == {Subscription.UNSUBSCRIBED}


def test_suppress_mode_adds_new_suppressions_and_skips_known_ones(write_csv, engine):
    Suppression.objects.create(email="known@example.org", reason=Suppression.COMPLAINT)
    path = write_csv("email\nNew@Example.org\nknown@example.org\n")

    job = import_file(path, None, engine, mode=ImportJob.SUPPRESS)

    assert counts(job) == {"rows": 2, "created": 1, "updated": 0, "skipped": 1, "invalid": 0}
    assert problems(job) == [(3, "already suppressed")]
    assert list(Suppression.objects.order_by("email").values_list("email", "reason")) == [
        ("known@example.org", Suppression.COMPLAINT), ("new@example.org", Suppression.IMPORT)]
    assert Suppression.objects.get(email="new@example.org").detail == (
        f"CSV import #{job.pk} (people.csv) by an operator on the command line")


# --- Dedupe, refusals, problems ------------------------------------------------------------------


def test_duplicates_within_the_file_keep_the_first_row(write_csv, newsletter, engine):
    path = write_csv("email,name\na@example.org,First\nA@EXAMPLE.ORG,Second\nb@example.org,B\na@example.org,Third\n")

    job = import_file(path, newsletter, engine, confirmed=True)

    assert counts(job) == {"rows": 4, "created": 2, "updated": 0, "skipped": 2, "invalid": 0}
    assert problems(job) == [(3, "duplicate of line 2"), (5, "duplicate of line 2")]
    assert Subscriber.objects.get(email__iexact="a@example.org").name == "First"


def test_suppressed_erased_and_blocklisted_addresses_are_skipped(write_csv, newsletter, engine):
    Suppression.objects.create(email="bounced@example.org", reason=Suppression.HARD_BOUNCE)
    ErasedAddress.objects.create(digest=erased_digest("erased@example.org"))
    SubscriberFactory(email="blocked@example.org", status=Subscriber.BLOCKLISTED)
    path = write_csv("email\nBounced@example.org\nerased@EXAMPLE.org\nblocked@example.org\nfine@example.org\n")

    job = import_file(path, newsletter, engine, confirmed=True)

    assert counts(job) == {"rows": 4, "created": 1, "updated": 0, "skipped": 3, "invalid": 0}
    assert problems(job) == [(2, "on the suppression list"), (3, "erased on request"), (4, "blocklisted")]
    assert list(newsletter.subscriptions.values_list("subscriber__email", flat=True)) == ["fine@example.org"]


def test_invalid_rows_are_reported_by_line_and_valid_rows_still_import(write_csv, newsletter, engine, monkeypatch):
    monkeypatch.setattr(importing_csv, "SNIFF_BYTES", 40)  # the bad byte below lies past the sniffed start
    long_address = "a" * 64 + "@" + "b" * 186 + ".org"
    path = write_csv(
        b"email,name,time zone\n"
        b"ok@example.org,Ada,UTC\n"
        b"not-an-address,Bob,\n"
        + long_address.encode() + b",Long,\n"
        b"\"cr@example.org\",\"Line\nbreak\",\n"
        b"tz@example.org,Tim,Mars/Olympus\n"
        b"cols@example.org,Too,Many,Columns\n"
        b"enc@example.org,J\xfcrgen,\n"
        b",No address,\n"
        b"ctl@example.org,Bell\x07,\n"
        b"\n"
        b"last@example.org,Zoe,Europe/Paris\n"
    )

    job = import_file(path, newsletter, engine, confirmed=True)

    assert counts(job) == {"rows": 10, "created": 2, "updated": 0, "skipped": 0, "invalid": 8}
    assert problems(job) == [
        (3, "invalid email address"),
        (4, "email address too long (more than 254 characters)"),
        (5, "line break inside a field"),
        (7, "unknown time zone “Mars/Olympus”"),
        (8, "wrong number of columns: expected 3, found 4"),
        (9, "bad encoding (bytes that are not valid UTF-8)"),
        (10, "no email address"),
        (11, "control character inside a field"),
    ]
    assert sorted(newsletter.subscriptions.values_list("subscriber__email", flat=True)) == [
        "last@example.org", "ok@example.org"]
    report = (Path(settings.MEDIA_ROOT) / job.error_report).read_text(encoding="utf-8")
    assert list(csv.reader(io.StringIO(report)))[:4] == [
        ["line", "email", "reason"], ["3", "not-an-address", "invalid email address"],
        ["4", long_address[:254], "email address too long (more than 254 characters)"],
        ["5", "cr@example.org", "line break inside a field"],
    ]


def test_backslashes_and_quotes_survive_the_copy(write_csv, newsletter, engine):
    job = import_file(write_csv('email,name,path\nada@example.org,"Ada \\ ""Countess""",C:\\data\\n\n'),
                      newsletter, engine, confirmed=True)

    assert job.created == 1
    ada = Subscriber.objects.get()
    assert (ada.name, ada.attributes) == ('Ada \\ "Countess"', {"path": "C:\\data\\n"})


def test_attribute_values_and_their_total_size_are_limited(write_csv, newsletter, engine):
    columns = [f"c{n}" for n in range(20)]
    wide = ",".join(["x" * 900] * 20)
    path = write_csv("email," + ",".join(columns) + "\n"
                     f"wide@example.org,{wide}\n"
                     "long@example.org," + "y" * 1001 + ",," * 9 + ",\n"
                     "ok@example.org," + ",".join(["z" * 500] * 20) + "\n")

    job = import_file(path, newsletter, engine, confirmed=True)

    assert problems(job) == [(2, "attributes too large (more than 16 KB)"),
                             (3, "value of “c0” too long (more than 1000 characters)")]
    assert len(Subscriber.objects.get().attributes) == 20


def test_the_problem_report_escapes_formulas(write_csv, newsletter, engine):
    job = import_file(write_csv("email\n=HYPERLINK(\"x\")\n"), newsletter, engine)

    report = (Path(settings.MEDIA_ROOT) / job.error_report).read_text(encoding="utf-8")
    assert report.splitlines()[1] == "2,\"'=HYPERLINK(\"\"x\"\")\",invalid email address"


def test_mapping_can_rename_attributes_and_ignore_columns(write_csv, newsletter, engine):
    path = write_csv("Mail,Secret,Company\nada@example.org,hunter2,ACME\n")

    job = import_file(path, newsletter, engine, confirmed=True,
                      mapping={"Mail": "email", "Secret": "", "Company": "attributes.employer"})

    assert job.created == 1
    assert Subscriber.objects.get().attributes == {"employer": "ACME"}


def test_tags_are_added_to_imported_subscribers(write_csv, newsletter, engine):
    Tag.objects.create(name="vip")
    job = import_file(write_csv("email\na@example.org\nb@example.org\n"), newsletter, engine,
                      confirmed=True, tags=["vip", "fair 2026"])

    assert job.created == 2
    for subscriber in Subscriber.objects.all():
        assert sorted(subscriber.tags.values_list("name", flat=True)) == ["fair 2026", "vip"]


def test_a_bad_mapping_fails_the_job_with_the_reason_and_changes_nothing(write_csv, newsletter, engine):
    job = import_file(write_csv("name\nAda\n"), newsletter, engine)

    assert (job.status, job.failure) == (ImportJob.FAILED, "Choose the column that holds the email addresses.")
    assert Subscriber.objects.count() == 0


def test_a_job_runs_once(write_csv, newsletter, engine):
    job = import_file(write_csv("email\na@example.org\n"), newsletter, engine, confirmed=True)

    importing.run_import(job, portable=engine == "portable")

    job.refresh_from_db()
    assert (job.status, job.created, job.skipped) == (ImportJob.DONE, 1, 0)


def test_both_engines_give_the_same_results(write_csv, newsletter, monkeypatch):
    monkeypatch.setattr(importing_orm_module(), "BATCH_ROWS", 2)  # several batches on the portable path
    SubscriptionFactory(subscriber__email="old@example.org", subscriber__attributes={"x": "1"},
                        mailing_list=newsletter, status=Subscription.UNCONFIRMED)
    Suppression.objects.create(email="sup@example.org")
    path = write_csv("email,name,plan\nold@example.org,Old,pro\nbad\nn1@example.org,N1,\nN1@example.org,Dup,\n"
                     "sup@example.org,,\nn2@example.org,N2,free\n")

    def outcome(engine):
        job = import_file(path, newsletter, engine, mode=ImportJob.UPSERT)
        rows = sorted(Subscription.objects.filter(mailing_list=newsletter).values_list(
            "subscriber__email", "subscriber__name", "subscriber__attributes", "status", "consent_form"))
        Subscription.objects.exclude(subscriber__email="old@example.org").delete()
        Subscriber.objects.exclude(email="old@example.org").delete()
        return counts(job), problems(job), [r[:4] + (r[4].startswith("CSV import #"),) for r in rows]

    assert outcome("copy") == outcome("portable")


def importing_orm_module():
    from lists import importing_orm

    return importing_orm


# --- Confirmation mails ------------------------------------------------------------------------


def test_unconfirmed_imports_send_one_confirmation_mail_per_address(write_csv, newsletter, engine, mailoutbox,
                                                                   django_capture_on_commit_callbacks):
    path = write_csv("email\nada@example.org\ngrace@example.org\n")

    with django_capture_on_commit_callbacks(execute=True):
        job = import_file(path, newsletter, engine)
    with django_capture_on_commit_callbacks(execute=True):  # the same file again: the per-address limit holds
        again = import_file(path, newsletter, engine, mode=ImportJob.UPSERT)

    assert (job.created, again.updated) == (2, 2)
    assert sorted(member(e, newsletter).status for e in ("ada@example.org", "grace@example.org")) == [
        Subscription.UNCONFIRMED] * 2
    assert sorted(mail.to[0] for mail in mailoutbox) == ["ada@example.org", "grace@example.org"]
    assert all(mail.subject == "Please confirm your subscription" for mail in mailoutbox)


def test_confirmed_imports_send_no_mail(write_csv, newsletter, engine, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        import_file(write_csv("email\nada@example.org\n"), newsletter, engine, confirmed=True)

    assert mailoutbox == []


def test_confirmation_requests_go_in_batches(write_csv, newsletter):
    job = import_file(write_csv("email\na@example.org\nb@example.org\nc@example.org\n"), newsletter, "copy")

    first = importing.request_import_confirmations(job, batch=2)
    rest = importing.request_import_confirmations(job, after_id=first, batch=2)

    assert first == member("b@example.org", newsletter).pk
    assert rest is None


# --- The command ---------------------------------------------------------------------------------


def test_import_command_imports_and_prints_a_summary(write_csv, newsletter):
    path = write_csv("E-Mail,Name,Plan\nada@example.org,Ada,pro\nbad,Bob,free\n")
    out = io.StringIO()

    call_command("import_subscribers", str(path), "--list", str(newsletter.pk), "--confirmed",
                 "--map", "Plan=attributes.tier", "--tag", "vip", stdout=out)

    lines = out.getvalue().splitlines()
    job = ImportJob.objects.get()
    assert lines[0] == "Importing people.csv into “Weekly Letter” (add new subscribers only; new subscriptions " \
                       "are confirmed at once)."
    assert lines[1] == "Columns: E-Mail → email, Name → name, Plan → attributes.tier"
    assert lines[2].startswith("[##############################] 100%  2 rows  ")
    assert lines[-2].startswith("Done in ") and lines[-2].endswith(
        ": 2 rows, 1 created, 0 updated, 0 skipped, 1 invalid.")
    assert lines[-1] == f"Skipped and invalid rows, with line numbers: {importing.report_path(job)}"
    ada = Subscriber.objects.get()
    assert (ada.attributes, list(ada.tags.values_list("name", flat=True))) == ({"tier": "pro"}, ["vip"])


def test_import_command_refuses_bad_arguments_with_a_plain_message(write_csv, newsletter):
    path = write_csv("email\na@example.org\n")
    with pytest.raises(CommandError, match="Name the list to import into with --list ID."):
        call_command("import_subscribers", str(path))
    with pytest.raises(CommandError, match="There is no list with id 999999."):
        call_command("import_subscribers", str(path), "--list", "999999")
    with pytest.raises(CommandError, match="write it as COLUMN=FIELD"):
        call_command("import_subscribers", str(path), "--list", str(newsletter.pk), "--map", "email")
    with pytest.raises(CommandError, match="No file at"):
        call_command("import_subscribers", str(path) + ".missing", "--list", str(newsletter.pk))
    assert ImportJob.objects.count() == 0 and Subscriber.objects.count() == 0


def test_save_upload_refuses_spreadsheets_and_large_files(settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    with pytest.raises(CSVFileError, match="This is not a CSV file"):
        importing.save_upload(SimpleUploadedFile("people.xlsx", b"PK\x03\x04"))
    settings.IMPORT_MAX_BYTES = 10
    with pytest.raises(CSVFileError, match="The file is 0.0 MB; the limit is 0 MB"):
        importing.save_upload(SimpleUploadedFile("people.csv", b"email\na@example.org\n"))
    assert not (Path(settings.MEDIA_ROOT) / "imports").exists() or not any((Path(settings.MEDIA_ROOT) / "imports").iterdir())


def test_mailing_list_is_required_for_adding(write_csv, engine):
    job = import_file(write_csv("email\na@example.org\n"), None, engine)
    assert (job.status, job.failure) == (ImportJob.FAILED, "Choose the list to import into.")
    assert MailingList.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_signup_racing_the_import_is_matched_on_the_next_attempt(write_csv, monkeypatch):
    from django.db import connections

    from lists import importing_pg

    newsletter = MailingListFactory()
    matched = importing_pg._known
    attempts = []

    def match_then_someone_signs_up(cursor, job):
        skipped = matched(cursor, job)
        if not attempts:  # after the import looked, before it inserts: a signup commits on another connection
            other = connections.create_connection("default")
            with other.cursor() as signup:
                signup.execute("INSERT INTO lists_subscriber (email, name, attributes, time_zone, status, created_at,"
                               " updated_at) VALUES ('race@example.org', 'Signed up', '{}', '', 'active', now(), now())")
            other.close()
        attempts.append(1)
        return skipped

    monkeypatch.setattr(importing_pg, "_known", match_then_someone_signs_up)

    job = import_file(write_csv("email,name\nrace@example.org,Imported\nother@example.org,Other\n"), newsletter,
                      "copy", confirmed=True)

    assert (len(attempts), counts(job)) == (2, {"rows": 2, "created": 2, "updated": 0, "skipped": 0, "invalid": 0})
    assert member("race@example.org", newsletter).subscriber.name == "Signed up"  # add leaves known people alone


# --- The new subscribers' subscriptions skip the per-row foreign key checks (lists.importing_pg) ------------


def _replication_role():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        return cursor.fetchone()[0]


def test_the_import_restores_the_foreign_key_checks_after_its_insert(write_csv, newsletter):
    from django.db import IntegrityError, connection, transaction

    from lists import importing_pg

    with connection.cursor() as cursor:
        assert importing_pg.may_skip_foreign_key_checks(cursor)  # the tests run as a superuser
    job = import_file(write_csv("email\nada@example.org\ngrace@example.org\n"), newsletter, "copy", confirmed=True)
    assert job.created == 2 and _replication_role() == "origin"
    assert {m.subscriber.email for m in Subscription.objects.filter(mailing_list=newsletter)} == {
        "ada@example.org", "grace@example.org"}
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:  # still checked
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("UPDATE lists_subscription SET mailing_list_id = -1 WHERE mailing_list_id = %s", [newsletter.pk])


def test_subscriptions_have_no_trigger_that_the_import_would_skip():
    """session_replication_role = replica skips every ordinary trigger, not only the foreign key checks."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'lists_subscription'::regclass AND NOT tgisinternal")
        assert cursor.fetchall() == []


def test_without_the_privilege_the_import_keeps_the_checks(write_csv, newsletter, monkeypatch):
    from lists import importing_pg

    monkeypatch.setattr(importing_pg, "may_skip_foreign_key_checks", lambda cursor: False)
    roles = []
    known = importing_pg._subscribe_known

    def note_role(cursor, job, details):
        roles.append(_replication_role())
        return known(cursor, job, details)

    monkeypatch.setattr(importing_pg, "_subscribe_known", note_role)
    job = import_file(write_csv("email\nada@example.org\n"), newsletter, "copy", confirmed=True)
    assert (job.created, roles) == (1, ["origin"])
    assert member("ada@example.org", newsletter).status == Subscription.CONFIRMED


@pytest.mark.django_db(transaction=True)
def test_the_list_cannot_be_deleted_while_the_import_writes_to_it(write_csv, monkeypatch):
    """The lock that stands in for the skipped checks: a concurrent delete of the list waits for the import."""
    from django.db import OperationalError, connections

    from lists import importing_events

    newsletter = MailingListFactory()
    announce = importing_events.announce_merge
    attempts = []

    def try_to_delete_the_list(job, details):  # in the merge's transaction, after the inserts
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
                with pytest.raises(OperationalError, match="lock timeout"):
                    cursor.execute("DELETE FROM lists_mailinglist WHERE id = %s", [newsletter.pk])
                attempts.append(1)
        finally:
            other.close()
        return announce(job, details)

    monkeypatch.setattr(importing_events, "announce_merge", try_to_delete_the_list)
    job = import_file(write_csv("email\nada@example.org\ngrace@example.org\n"), newsletter, "copy", confirmed=True)
    assert (attempts, job.status, job.created) == ([1], ImportJob.DONE, 2)
    assert Subscription.objects.filter(mailing_list=newsletter).count() == 2
