"""List hygiene: role, throwaway and no-MX flags; signup refusal; imports (both engines) that flag or
skip; the MX check against a real DNS server on loopback, and its cache; pages, roles, admin, command."""

import json
import time

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from lists import hygiene, hygiene_import, importing, services
from lists.models import ImportJob, MailingList, Subscriber, Subscription
from lists.validation import InvalidSubscriber
from tests.dns_server import dns_server  # noqa: F401
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Weekly Letter", opt_in=MailingList.SINGLE)


@pytest.fixture
def dns(dns_server, settings):
    """The loopback DNS server with quick time-outs: mail.test has an MX, a-only.test only an address,
    nomx.test neither, nullmx.test a null MX, broken.test fails; other names do not exist."""
    settings.DNS_TIMEOUT_SECONDS = 1
    dns_server.set("mail.test", "MX", ["10 mx1.mail.test", "20 mx2.mail.test"])
    dns_server.set("a-only.test", "A", ["192.0.2.10"])
    dns_server.set("nomx.test", "TXT", ["v=spf1 -all"])
    dns_server.set("nullmx.test", "MX", ["0 ."])
    dns_server.servfail("broken.test")
    return dns_server


# --- The rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("email, is_role", [
    ("postmaster@example.org", True),
    ("Info@Example.org", True),
    ("abuse@example.org", True),
    ("no-reply@example.org", True),
    ("No_Reply+weekly@example.org", True),
    ("mailer-daemon@example.org", True),
    ("do.not.reply@example.org", True),
    ("billing+2024@example.org", True),
    ("ada@example.org", False),
    ("information@example.org", False),
    ("info.ada@example.org", False),
    ("pr@example.org", False),
])
def test_it_recognises_role_local_parts_whatever_the_case_tag_and_separators(email, is_role):
    assert hygiene.is_role_address(email) is is_role


@pytest.mark.parametrize("email, is_disposable", [
    ("ada@mailinator.com", True),
    ("ada@MAILINATOR.COM", True),
    ("ada@inbox.mailinator.com", True),
    ("ada@sharklasers.com", True),
    ("ada@yopmail.fr", True),
    ("ada@gmail.com", False),
    ("ada@mailinator.com.example.org", False),
    ("ada@notreallymailinator.com", False),
    ("ada@relay.firefox.com", False),
])
def test_it_recognises_throwaway_domains_and_their_subdomains(email, is_disposable):
    assert hygiene.is_disposable_address(email) is is_disposable


def test_the_throwaway_list_holds_a_few_hundred_lower_case_domains_once_each():
    lines = [line.strip() for line in hygiene.DATA_FILE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    assert 300 <= len(lines) == len(set(lines))
    assert all(line == line.lower() and "." in line and " " not in line and "@" not in line for line in lines)


def test_classify_combines_the_flags_and_refuses_invalid_addresses():
    assert hygiene.classify("info@mailinator.com") == hygiene.Flags(role=True, disposable=True, no_mx=False)
    assert hygiene.classify("ada@example.org") == hygiene.Flags()
    assert not hygiene.classify("ada@example.org")
    with pytest.raises(InvalidSubscriber) as raised:
        hygiene.classify("ada at example.org")
    assert raised.value.message == "Enter a valid email address, such as name@example.com."


def test_the_sql_twins_of_the_rules_agree_with_python():
    addresses = ["ada@example.org", "no-reply+x@mail.example.org", "Info@Example.org", '"a@b"@example.org',
                 '"info@x"@example.org', "bob.smith+tag@sub.mailinator.com", "x_y-z.w@example.org",
                 "Do.Not-Reply_@example.org"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {hygiene_import.ROLE_KEY_SQL.format('k')} = ANY(%s), {hygiene_import.DOMAIN_SQL.format('k')}"
            " FROM unnest(%s::text[]) WITH ORDINALITY AS a(e, n), lower(e) AS k ORDER BY n",
            [sorted(hygiene.ROLE_LOCAL_PARTS), addresses])
        from_sql = cursor.fetchall()

    from_python = [(hygiene.is_role_address(a), hygiene.split(a)[1]) for a in addresses]
    assert from_sql == from_python
    assert [is_role for is_role, _ in from_python] == [False, True, True, False, False, False, False, True]


# --- The MX check (a real DNS server on loopback) ------------------------------------------------------


def test_the_mx_check_tells_domains_with_mail_servers_from_those_without(dns):
    statuses = hygiene.check_domains(["mail.test", "a-only.test", "nomx.test", "nullmx.test", "gone.test",
                                      "broken.test"])

    assert statuses == {
        "mail.test": hygiene.MX_OK,  # MX records
        "a-only.test": hygiene.MX_OK,  # no MX, but an address to deliver to (RFC 5321's implicit MX)
        "nomx.test": hygiene.MX_NONE,  # the name exists, with neither
        "nullmx.test": hygiene.MX_NONE,  # a null MX: "no mail here" (RFC 7505)
        "gone.test": hygiene.MX_NONE,  # NXDOMAIN
        "broken.test": hygiene.MX_UNKNOWN,  # SERVFAIL: we cannot tell, so never flagged
    }


def test_mx_answers_are_cached_for_a_day_both_ways_but_failures_are_asked_again(dns):
    hygiene.check_domains(["mail.test", "gone.test", "broken.test"])
    asked = len(dns.queries)

    again = hygiene.check_domains(["MAIL.test", "gone.test", "broken.test"])

    assert again == {"mail.test": hygiene.MX_OK, "gone.test": hygiene.MX_NONE, "broken.test": hygiene.MX_UNKNOWN}
    assert {q for q in dns.queries[asked:]} == {("broken.test", "MX")}
    redis = cache._cache.get_client()
    assert 86_000 < redis.ttl(cache.make_and_validate_key("lists:mx:gone.test")) <= 86_400


def test_the_mx_check_stops_at_its_time_budget(dns):
    dns.drop("slow.test")
    started = time.monotonic()

    statuses = hygiene.check_domains(["slow.test", "mail.test"], seconds=0.5)

    assert statuses == {"slow.test": hygiene.MX_UNKNOWN, "mail.test": hygiene.MX_OK}
    assert time.monotonic() - started < 0.9


def test_classify_with_the_mx_check_flags_a_domain_without_mail_servers(dns):
    assert hygiene.classify("ada@nomx.test", check_mx=True) == hygiene.Flags(no_mx=True)
    assert hygiene.classify("ada@mail.test", check_mx=True) == hygiene.Flags()


# --- Signup --------------------------------------------------------------------------------------------


def test_the_signup_form_refuses_a_throwaway_address_with_a_plain_message(client, newsletter):
    response = client.post(reverse("lists:public_signup", args=[newsletter.public_id]),
                           {"email": "ada@mailinator.com", "name": "Ada"})

    assert response.status_code == 400
    assert hygiene.DISPOSABLE_SIGNUP_MESSAGE in response.text
    assert not Subscriber.objects.exists()


def test_the_json_signup_refuses_a_throwaway_address_too(client, newsletter):
    response = client.post(reverse("lists:public_signup_json", args=[newsletter.public_id]),
                           json.dumps({"email": "ada@sub.yopmail.com"}), content_type="application/json")

    assert (response.status_code, json.loads(response.content)) == (
        400, {"ok": False, "errors": {"email": [hygiene.DISPOSABLE_SIGNUP_MESSAGE]}})
    assert not Subscriber.objects.exists()


def test_a_list_may_accept_throwaway_addresses_which_are_then_flagged(client, newsletter):
    newsletter.reject_disposable = False
    newsletter.save()

    response = client.post(reverse("lists:public_signup", args=[newsletter.public_id]),
                           {"email": "ada@mailinator.com"})

    assert response.status_code == 200
    ada = Subscriber.objects.get()
    assert (ada.is_disposable_address, ada.is_role_address, ada.has_no_mx) == (True, False, False)


def test_a_role_address_signs_up_and_is_flagged(client, newsletter):
    response = client.post(reverse("lists:public_signup", args=[newsletter.public_id]),
                           {"email": "Info@Bakery.example"})

    assert response.status_code == 200
    subscriber = Subscriber.objects.get()
    assert (subscriber.email, subscriber.is_role_address, subscriber.is_disposable_address) == (
        "Info@bakery.example", True, False)


def test_the_api_and_dashboard_flag_but_do_not_refuse_throwaway_addresses(newsletter):
    subscription = services.subscribe(newsletter, "ada@mailinator.com", source=Subscription.API)

    assert subscription.subscriber.is_disposable_address is True


def test_a_changed_address_gets_its_own_flags():
    subscriber = services.subscribe(MailingListFactory(), "postmaster@example.org", source=Subscription.ADMIN).subscriber

    services.update_subscriber(subscriber, email="grace@yopmail.com")

    subscriber.refresh_from_db()
    assert (subscriber.is_role_address, subscriber.is_disposable_address) == (False, True)


def test_editors_switch_the_refusal_off_on_the_list_form(bob_client, newsletter):
    page = bob_client.get(reverse("lists:list_edit", args=[newsletter.pk]))
    assert 'name="reject_disposable"' in page.text and "Refuse throwaway addresses" in page.text
    data = {"name": "Weekly Letter", "opt_in": "single", "confirmation_subject": newsletter.confirmation_subject,
            "confirmation_body": newsletter.confirmation_body, "thank_you_message": "Thanks",
            "confirmed_message": "Welcome", "accent_color": "#2456d6", "track_opens": "on", "track_clicks": "on"}

    response = bob_client.post(reverse("lists:list_edit", args=[newsletter.pk]), data)

    assert response.status_code == 302
    newsletter.refresh_from_db()
    assert newsletter.reject_disposable is False


# --- Imports -------------------------------------------------------------------------------------------


@pytest.fixture(params=["copy", "portable"])
def engine(request):
    return request.param


FILE = (
    "email,name\n"
    "ada@example.org,Ada\n"  # 2
    "postmaster@example.org,Post\n"  # 3
    "grace@mailinator.com,Grace\n"  # 4
    "info@yopmail.com,Both\n"  # 5
    "No-Reply+x@Example.org,Robot\n"  # 6
    "ada@example.org,Ada again\n"  # 7
    "not an address,Nobody\n"  # 8
)


def run_import(tmp_path, mailing_list, engine, text=FILE, **fields):
    path = tmp_path / "people.csv"
    path.write_text(text)
    job = ImportJob.objects.create(mailing_list=mailing_list, file=str(path), original_name=path.name,
                                   confirmed=True, **fields)
    importing.run_import(job, portable=engine == "portable")
    job.refresh_from_db()
    return job


def flags_of(*emails):
    found = {s.email: (s.is_role_address, s.is_disposable_address, s.has_no_mx) for s in Subscriber.objects.all()}
    return [found.get(email) for email in emails]


def test_an_import_flags_role_and_throwaway_addresses(tmp_path, newsletter, engine):
    job = run_import(tmp_path, newsletter, engine)

    assert (job.created, job.updated, job.skipped, job.invalid, job.flagged) == (5, 0, 1, 1, 4)
    assert flags_of("ada@example.org", "postmaster@example.org", "grace@mailinator.com", "info@yopmail.com",
                    "No-Reply+x@example.org") == [
        (False, False, False), (True, False, False), (False, True, False), (True, True, False), (True, False, False)]


def test_an_import_that_skips_flagged_addresses_says_why_for_each(tmp_path, newsletter, engine):
    job = run_import(tmp_path, newsletter, engine, skip_flagged=True)

    assert (job.created, job.updated, job.skipped, job.invalid, job.flagged) == (1, 0, 5, 1, 4)
    assert [(p["line"], p["reason"]) for p in job.errors] == [
        (3, "role address"), (4, "throwaway mail domain"), (5, "throwaway mail domain"), (6, "role address"),
        (7, "duplicate of line 2"), (8, "invalid email address")]
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ada@example.org"]


def test_an_import_flags_subscribers_that_were_already_known(tmp_path, newsletter, engine):
    SubscriberFactory(email="Postmaster@example.org")
    job = run_import(tmp_path, newsletter, engine, mode=ImportJob.UPSERT)

    assert (job.created, job.updated, job.flagged) == (5, 0, 4)  # a new subscription of a known subscriber
    assert flags_of("Postmaster@example.org") == [(True, False, False)]


def test_an_import_with_the_mx_check_flags_or_skips_domains_without_mail_servers(tmp_path, newsletter, engine,
                                                                                  dns):
    text = "email\nada@mail.test\nbob@nomx.test\ncy@gone.test\ndi@a-only.test\ned@broken.test\nfay@nomx.test\n"

    job = run_import(tmp_path, newsletter, engine, text=text, check_mx=True)

    assert (job.created, job.skipped, job.flagged) == (6, 0, 3)
    assert flags_of("ada@mail.test", "bob@nomx.test", "cy@gone.test", "di@a-only.test", "ed@broken.test") == [
        (False, False, False), (False, False, True), (False, False, True), (False, False, False),
        (False, False, False)]
    assert sorted(q for q in dns.queries if q[1] == "MX") == [
        ("a-only.test", "MX"), ("broken.test", "MX"), ("gone.test", "MX"), ("mail.test", "MX"), ("nomx.test", "MX")]


def test_an_import_with_the_mx_check_can_skip_them(tmp_path, newsletter, engine, dns):
    job = run_import(tmp_path, newsletter, engine, text="email\nada@mail.test\nbob@nomx.test\n", check_mx=True,
                     skip_flagged=True)

    assert (job.created, job.skipped) == (1, 1)
    assert [(p["line"], p["reason"]) for p in job.errors] == [(3, "no mail server for the domain")]


def test_an_mx_check_that_finds_mail_servers_lifts_a_stale_flag_for_the_whole_domain(tmp_path, newsletter, engine,
                                                                                      dns):
    SubscriberFactory(email="old@mail.test", has_no_mx=True)
    SubscriberFactory(email="other@nomx.test", has_no_mx=True)

    run_import(tmp_path, newsletter, engine, text="email\nada@mail.test\n", check_mx=True)

    assert flags_of("old@mail.test", "other@nomx.test") == [(False, False, False), (False, False, True)]


def test_an_import_without_the_mx_check_asks_no_dns_and_keeps_known_mx_flags(tmp_path, newsletter, engine, dns):
    SubscriberFactory(email="bob@nomx.test", has_no_mx=True)

    run_import(tmp_path, newsletter, engine, text="email\nbob@nomx.test\npostmaster@nomx.test\n",
               mode=ImportJob.UPSERT)

    assert dns.queries == []
    assert flags_of("bob@nomx.test", "postmaster@nomx.test") == [(False, False, True), (True, False, False)]


def test_both_engines_flag_and_skip_alike(tmp_path, newsletter):
    def outcome(engine, skip):
        Subscriber.objects.all().delete()
        job = run_import(tmp_path, newsletter, engine, skip_flagged=skip)
        people = sorted(Subscriber.objects.values_list("email", "is_role_address", "is_disposable_address"))
        return people, job.errors, (job.created, job.updated, job.skipped, job.invalid, job.flagged)

    assert outcome("copy", False) == outcome("portable", False)
    assert outcome("copy", True) == outcome("portable", True)


def test_the_import_form_passes_the_hygiene_options_to_the_job(bob_client, newsletter):
    from django.core.files.uploadedfile import SimpleUploadedFile

    page = bob_client.get(reverse("lists:import_start", args=[newsletter.pk]))
    assert "Skip role addresses and throwaway domains" in page.text

    bob_client.post(reverse("lists:import_start", args=[newsletter.pk]), {
        "file": SimpleUploadedFile("people.csv", b"email\nada@example.org\n", content_type="text/csv"),
        "mode": "add", "check_mx": "on", "skip_flagged": "on"})

    job = ImportJob.objects.get()
    assert (job.check_mx, job.skip_flagged) == (True, True)


def test_the_import_summary_counts_the_flagged_addresses(bob_client, tmp_path, newsletter):
    job = run_import(tmp_path, newsletter, "copy")

    page = bob_client.get(reverse("lists:import_detail", args=[job.pk]))

    assert "Flagged addresses in the file (role address, throwaway domain): 4." in page.text
    assert f'{reverse("lists:subscriber_index")}?list={newsletter.pk}&amp;flag=any">see them</a>' in page.text


# --- Pages, roles, the admin, the command ----------------------------------------------------------------


@pytest.fixture
def flagged(newsletter):
    people = {
        "ada": SubscriberFactory(email="ada@example.org"),
        "post": SubscriberFactory(email="postmaster@example.org", is_role_address=True),
        "temp": SubscriberFactory(email="grace@mailinator.com", is_disposable_address=True),
        "nomx": SubscriberFactory(email="cy@nomx.test", has_no_mx=True),
    }
    for subscriber in people.values():
        SubscriptionFactory(subscriber=subscriber, mailing_list=newsletter)
    return people


def listed(response):
    return sorted(e for e in ("ada@example.org", "postmaster@example.org", "grace@mailinator.com", "cy@nomx.test")
                  if f">{e}</a>" in response.text)


def test_the_subscriber_index_filters_by_flag_and_shows_badges(victor_client, flagged):
    index = reverse("lists:subscriber_index")

    assert listed(victor_client.get(index, {"flag": "role"})) == ["postmaster@example.org"]
    assert listed(victor_client.get(index, {"flag": "disposable"})) == ["grace@mailinator.com"]
    assert listed(victor_client.get(index, {"flag": "no_mx"})) == ["cy@nomx.test"]
    assert listed(victor_client.get(index, {"flag": "any"})) == [
        "cy@nomx.test", "grace@mailinator.com", "postmaster@example.org"]
    everyone = victor_client.get(index, {"flag": "bogus"})
    assert len(listed(everyone)) == 4
    assert '<option value="role">Role addresses</option>' in everyone.text
    assert everyone.text.count(">role address</span>") == 1 and everyone.text.count(">throwaway</span>") == 1
    assert everyone.text.count(">no mail server</span>") == 1
    assert 'id="bulk-form"' not in everyone.text  # a viewer reads only


def test_the_bulk_form_carries_the_flag_filter_and_acts_on_it_only(bob_client, flagged, newsletter):
    page = bob_client.get(reverse("lists:subscriber_index"), {"flag": "role"})
    assert '<input type="hidden" name="flag" value="role">' in page.text

    response = bob_client.post(reverse("lists:subscriber_bulk"), {
        "scope": "filter", "action": "unsubscribe", "flag": "role", "confirmed": "1"})

    assert response.status_code == 302
    assert sorted(Subscription.objects.filter(status=Subscription.UNSUBSCRIBED)
                  .values_list("subscriber__email", flat=True)) == ["postmaster@example.org"]


def test_the_subscriber_page_shows_the_flags(victor_client, flagged):
    page = victor_client.get(reverse("lists:subscriber_detail", args=[flagged["post"].pk]))

    assert ">role address</span>" in page.text and ">throwaway</span>" not in page.text


def test_the_index_and_its_filter_are_refused_without_a_role(mallory_client, flagged):
    assert mallory_client.get(reverse("lists:subscriber_index"), {"flag": "any"}).status_code == 403


def test_the_export_follows_the_flag_filter(victor_client, flagged):
    response = victor_client.get(reverse("lists:export_search"), {"flag": "disposable"})

    rows = b"".join(response.streaming_content).decode().splitlines()
    assert len(rows) == 2 and rows[1].startswith("grace@mailinator.com,")


def test_the_admin_filters_by_flag_and_checks_flags_again(admin_client, flagged):
    url = reverse("admin:lists_subscriber_changelist")
    page = admin_client.get(url, {"is_role_address__exact": "1"})
    assert page.status_code == 200 and "postmaster@example.org" in page.text and "ada@example.org" not in page.text
    Subscriber.objects.filter(pk=flagged["post"].pk).update(is_role_address=False)
    Subscriber.objects.filter(pk=flagged["ada"].pk).update(is_disposable_address=True)

    admin_client.post(url, {"action": "recheck_flags", "_selected_action": [s.pk for s in flagged.values()]})

    assert flags_of("ada@example.org", "postmaster@example.org", "grace@mailinator.com", "cy@nomx.test") == [
        (False, False, False), (True, False, False), (False, True, False), (False, False, True)]
    assert admin_client.get(reverse("admin:lists_importjob_changelist"), {"skip_flagged__exact": "1"}).status_code == 200
    assert admin_client.get(reverse("admin:lists_mailinglist_changelist"),
                            {"reject_disposable__exact": "0"}).status_code == 200


def test_the_command_flags_existing_subscribers(flagged, dns, capsys):
    with connection.cursor() as cursor:  # as stored before the flags existed
        cursor.execute("UPDATE lists_subscriber SET is_role_address = false, is_disposable_address = false,"
                       " has_no_mx = false")

    call_command("flag_subscribers")
    assert flags_of("postmaster@example.org", "grace@mailinator.com", "cy@nomx.test") == [
        (True, False, False), (False, True, False), (False, False, False)]
    call_command("flag_subscribers", "--check-mx")  # no domain here has a mail server on the test DNS

    assert flags_of("ada@example.org", "postmaster@example.org", "grace@mailinator.com", "cy@nomx.test") == [
        (False, False, True), (True, False, True), (False, True, True), (False, False, True)]
    assert capsys.readouterr().out == "Flags changed on 2 subscriber(s).\nFlags changed on 4 subscriber(s).\n"


def test_the_import_command_takes_the_hygiene_options(tmp_path, newsletter, dns):
    import io

    path = tmp_path / "people.csv"
    path.write_text("email\nada@mail.test\ninfo@mail.test\nbob@nomx.test\n")
    out = io.StringIO()

    call_command("import_subscribers", str(path), "--list", str(newsletter.pk), "--confirmed", "--check-mx",
                 "--skip-flagged", stdout=out)

    job = ImportJob.objects.get()
    assert (job.check_mx, job.skip_flagged, job.created, job.skipped, job.flagged) == (True, True, 1, 2, 2)
    assert "2 role, throwaway or mail-less address(es) skipped." in out.getvalue().splitlines()
