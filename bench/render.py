"""
Per-message cost of turning a template into signed MIME bytes (`make bench-render`).

Compiles one realistic campaign (a layout with a <style> block, a ~2 KB HTML
body with Liquid, six links, the footer) once, then measures per message:
rendering (Liquid + click-link rewriting with signed tokens + open pixel),
building the MIME message, and DKIM signing — each against the baseline it
replaces, in the same run: EmailMessage / email.mime for MIME, dkimpy for
signing, django.core.signing for tokens, and CSS inlining / text conversion
per message instead of once per template. No database: these modules are pure.

Prints ONE JSON object as its last line.
"""

import json
import statistics
import sys
import time
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings  # noqa: E402

# Only the tokens read a setting; the project's settings (and a database) are not needed.
settings.configure(SECRET_KEY="bench-only-secret-key-" + "x" * 32)

import css_inline  # noqa: E402
import dkim as dkimpy  # noqa: E402
from django.core import signing  # noqa: E402

from autoresponder import tokens  # noqa: E402
from campaigns import dkim, mime, rendering, textify  # noqa: E402

MESSAGES = 2000

LAYOUT = """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ list.name }}</title>
<style>
body { margin: 0; background: #f4f4f4; font-family: Helvetica, Arial, sans-serif; }
.frame { max-width: 600px; margin: 0 auto; background: #ffffff; padding: 24px; }
h1 { font-size: 24px; color: #222222; } p { font-size: 16px; line-height: 1.5; color: #333333; }
a { color: #0a66c2; } .button { display: inline-block; padding: 12px 20px; background: #0a66c2; color: #ffffff; }
.footer { font-size: 12px; color: #777777; }
@media (max-width: 600px) { .frame { padding: 12px; } }
</style></head>
<body><div class="frame">
<p><a href="{{ view_in_browser_url }}">View this email in your browser</a></p>
{{ content }}
<p class="footer">You receive this because you joined {{ list.name }}.
<a href="{{ unsubscribe_url }}">Unsubscribe</a> | <a href="{{ preferences_url }}">Update your preferences</a><br>
{{ sender.from_name }}, {{ sender.postal_address | newline_to_br }}</p>
</div></body></html>"""

BODY = """<h1>Hello {{ subscriber.first_name | default: "friend" }},</h1>
<p>Here is what happened this week at {{ list.name }}. We shipped the new dashboard, fixed the
export bug that some of you reported, and wrote up how we keep sending fast.</p>
<p><a class="button" href="https://example.com/blog/sending-fast?utm_source=newsletter&amp;utm_medium=email">Read the story</a></p>
<table><tr><td><a href="https://example.com/changelog">Changelog</a></td><td><a href="https://example.com/docs">Docs</a></td></tr>
{% for tip in subscriber.attributes.tips %}<tr><td colspan="2">Tip: {{ tip }}</td></tr>{% endfor %}</table>
{% if subscriber.attributes.plan == "gold" %}<p>As a gold member you get early access:
<a href="https://example.com/early-access">join the preview</a>.</p>{% else %}<p>Upgrade to gold for early access:
<a href="https://example.com/pricing">see plans</a>.</p>{% endif %}
<p>Questions? Just reply, or write to <a href="mailto:help@example.com">help@example.com</a>.</p>
<p>Thanks for reading,<br>{{ sender.from_name }}</p>"""


def context(i):
    return {
        "subscriber": {"email": f"reader{i}@example.org", "name": f"Reader {i}", "first_name": f"Reader{i}",
                       "last_name": "Example", "attributes": {"plan": "gold" if i % 3 else "free",
                                                              "tips": ["Use segments", "Try Markdown"]}},
        "list": {"name": "Weekly Letter"},
        "sender": {"from_name": "Example Team", "from_email": "news@example.com",
                   "postal_address": "1 Main Street\nSpringfield 12345"},
        "unsubscribe_url": f"https://mail.example.com/u/{tokens.sign('unsubscribe', 10**8 + i)}",
        "preferences_url": f"https://mail.example.com/p/{tokens.sign('preferences', 10**8 + i)}",
        "view_in_browser_url": f"https://mail.example.com/v/{tokens.sign('view', 10**8 + i)}",
    }


def per_call_ms(func, count, repeats=3):
    """Median over `repeats` runs of the mean time of one call, in ms."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(count):
            func(i)
        runs.append((time.perf_counter() - started) / count * 1000)
    return statistics.median(runs)


def main():
    started = time.perf_counter()
    prepare_ms = per_call_ms(lambda i: rendering.prepare(subject="{{ list.name }}: news for {{ subscriber.first_name }}",
                                                         body=BODY, layout=LAYOUT), 20)
    prepared = rendering.prepare(subject="{{ list.name }}: news for {{ subscriber.first_name }}", body=BODY, layout=LAYOUT)
    assert prepared.warnings == (), prepared.warnings
    contexts = [context(i) for i in range(MESSAGES)]
    link_ids = {}

    def render(i):
        message_id = 10**8 + i
        return prepared.render(
            contexts[i],
            rewrite_url=lambda url: "https://mail.example.com/c/" + tokens.sign(
                "click", message_id, link_ids.setdefault(url, len(link_ids) + 1)),
            open_pixel_url=f"https://mail.example.com/o/{tokens.sign('open', message_id)}.gif")

    rendered = [render(i) for i in range(MESSAGES)]
    assert rendering.check_compliance(rendered[0].html, rendered[0].text,
                                      unsubscribe_url=contexts[0]["unsubscribe_url"],
                                      postal_address="1 Main Street\nSpringfield 12345") == []
    render_ms = per_call_ms(render, MESSAGES)
    compliance_ms = per_call_ms(lambda i: rendering.check_compliance(
        rendered[i].html, rendered[i].text, unsubscribe_url=contexts[i]["unsubscribe_url"],
        postal_address="1 Main Street\nSpringfield 12345"), MESSAGES)

    # The work `prepare` takes out of the per-message loop.
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
    raw_html = LAYOUT.replace("{{ content }}", BODY)
    inline_per_message_ms = per_call_ms(lambda i: inliner.inline(raw_html), 300)
    textify_per_message_ms = per_call_ms(lambda i: textify.html_to_text(rendered[i].html), 300)

    def fields(i):
        r = rendered[i]
        return dict(from_name="Example Team", from_email="news@example.com", to_email=f"reader{i}@example.org",
                    to_name=f"Reader {i}", subject=r.subject, html=r.html, text=r.text,
                    message_id=f"<{10**8 + i}@mail.example.com>", reply_to="replies@example.com",
                    headers={"List-Unsubscribe": f"<{contexts[i]['unsubscribe_url']}>",
                             "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})

    build_ms = per_call_ms(lambda i: mime.build_message(**fields(i)), MESSAGES)
    emailmessage_ms = per_call_ms(lambda i: _email_message(fields(i)), 300)
    email_mime_ms = per_call_ms(lambda i: _email_mime(fields(i)), 300)
    html_bytes = statistics.mean(len(r.html.encode()) for r in rendered[:100])

    raws = [mime.build_message(**fields(i)) for i in range(MESSAGES)]
    signers = {kind: dkim.Signer("example.com", "bench", dkim.generate_key(kind)[0]) for kind in ("rsa", "ed25519")}
    rsa_ms = per_call_ms(lambda i: signers["rsa"].sign(raws[i]), 500)
    ed25519_ms = per_call_ms(lambda i: signers["ed25519"].sign(raws[i]), MESSAGES)
    rsa_pem = signers["rsa"]._key.private_bytes(  # dkimpy wants the traditional PEM form
        dkim.serialization.Encoding.PEM, dkim.serialization.PrivateFormat.TraditionalOpenSSL,
        dkim.serialization.NoEncryption())
    dkimpy_rsa_ms = per_call_ms(lambda i: dkimpy.sign(raws[i], b"bench", b"example.com", rsa_pem,
                                                      include_headers=[b"from", b"to", b"subject"]), 20)

    token_us = per_call_ms(lambda i: tokens.sign("click", 10**8 + i, 7), 20000) * 1000
    unsign_token = tokens.sign("click", 10**8, 7)
    unsign_us = per_call_ms(lambda i: tokens.unsign("click", unsign_token), 20000) * 1000
    django_signing_us = per_call_ms(lambda i: signing.dumps([10**8 + i, 7], salt="click"), 5000) * 1000

    pipeline_ed25519_ms = render_ms + compliance_ms + build_ms + ed25519_ms
    pipeline_rsa_ms = render_ms + compliance_ms + build_ms + rsa_ms
    result = {
        "bench": "render",
        "messages": MESSAGES,
        "html_bytes": round(html_bytes),
        "prepare_ms_once_per_batch": round(prepare_ms, 3),
        "render_ms": round(render_ms, 4),
        "compliance_check_ms": round(compliance_ms, 4),
        "css_inline_if_per_message_ms": round(inline_per_message_ms, 4),
        "textify_if_per_message_ms": round(textify_per_message_ms, 4),
        "build_ms": round(build_ms, 4),
        "build_emailmessage_ms": round(emailmessage_ms, 4),
        "build_email_mime_ms": round(email_mime_ms, 4),
        "build_speedup_vs_emailmessage": round(emailmessage_ms / build_ms, 1),
        "build_speedup_vs_email_mime": round(email_mime_ms / build_ms, 1),
        "dkim_ed25519_ms": round(ed25519_ms, 4),
        "dkim_rsa2048_ms": round(rsa_ms, 4),
        "dkimpy_rsa2048_ms": round(dkimpy_rsa_ms, 3),
        "dkim_rsa_speedup_vs_dkimpy": round(dkimpy_rsa_ms / rsa_ms, 1),
        "token_sign_us": round(token_us, 2),
        "token_unsign_us": round(unsign_us, 2),
        "django_signing_dumps_us": round(django_signing_us, 2),
        "pipeline_ms_ed25519": round(pipeline_ed25519_ms, 4),
        "pipeline_msgs_per_s_one_core_ed25519": round(1000 / pipeline_ed25519_ms),
        "pipeline_ms_rsa2048": round(pipeline_rsa_ms, 4),
        "pipeline_msgs_per_s_one_core_rsa2048": round(1000 / pipeline_rsa_ms),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


def _email_message(f):
    message = _with_headers(EmailMessage(), f)
    message.set_content(f["text"])
    message.add_alternative(f["html"], subtype="html")
    return message.as_bytes()


def _email_mime(f):
    message = _with_headers(MIMEMultipart("alternative"), f)
    message.attach(MIMEText(f["text"], "plain", "utf-8"))
    message.attach(MIMEText(f["html"], "html", "utf-8"))
    return message.as_bytes()


def _with_headers(message, f):
    message["From"] = f"{f['from_name']} <{f['from_email']}>"
    message["To"] = f"{f['to_name']} <{f['to_email']}>"
    message["Subject"] = f["subject"]
    message["Message-ID"] = f["message_id"]
    message["Reply-To"] = f["reply_to"]
    for name, value in f["headers"].items():
        message[name] = value
    return message


if __name__ == "__main__":
    main()
