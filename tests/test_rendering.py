import re

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st
from liquid.exceptions import LiquidError

from campaigns import rendering
from campaigns.rendering import TemplateError, check_compliance, prepare, validate
from campaigns.shield import LIQUID
from campaigns.textify import html_to_text

UNSUBSCRIBE = "https://mail.example.com/u/tok-1"
PREFERENCES = "https://mail.example.com/p/tok-1"
ADDRESS = "1 Main Street\nSpringfield 12345"


def context(**subscriber):
    person = {"email": "zoe@example.org", "name": "Zoë Adams", "first_name": "Zoë",
              "last_name": "Adams", "attributes": {"plan": "gold", "items": ["tea", "cake"]}}
    person.update(subscriber)
    return {
        "subscriber": person,
        "list": {"name": "Weekly Letter"},
        "sender": {"from_name": "Example", "from_email": "news@example.com", "postal_address": ADDRESS},
        "unsubscribe_url": UNSUBSCRIBE,
        "preferences_url": PREFERENCES,
        "view_in_browser_url": "https://mail.example.com/v/tok-1",
    }


FOOTER = ('<p class="footer"><a href="{{ unsubscribe_url }}">Unsubscribe</a> | '
          '<a href="{{ preferences_url }}">Preferences</a><br>{{ sender.postal_address | newline_to_br }}</p>')


# -- validation ----------------------------------------------------------------------


def test_validate_reports_the_line_of_a_syntax_error():
    with pytest.raises(TemplateError) as caught:
        validate("<p>Hi</p>\n<p>there</p>\n{% if subscriber.name %}\n{% endfor %}")
    assert caught.value.line == 4
    assert caught.value.message == "Line 4: unexpected tag 'endfor'"
    assert str(caught.value) == "Line 4: unexpected tag 'endfor'"


def test_validate_refuses_an_unclosed_output():
    with pytest.raises(TemplateError) as caught:
        validate("Hello {{ subscriber.name ")
    assert caught.value.message == "Line 1: expected '}}', found end of file"


def test_validate_refuses_an_unknown_filter_at_save_time():
    with pytest.raises(TemplateError) as caught:
        validate("Hello\n{{ subscriber.name | shout }}")
    assert caught.value.message == "Line 2: unknown filter 'shout'"


@pytest.mark.parametrize("tag", ["include", "render"])
def test_templates_cannot_read_other_templates_from_files(tag):
    with pytest.raises(TemplateError) as caught:
        validate("{% " + tag + " '../../settings.py' %}")
    assert caught.value.message == f"Line 1: the '{tag}' tag is not available; paste the content into the template"


def test_a_layout_needs_a_content_slot():
    with pytest.raises(TemplateError) as caught:
        validate("<html><body>no slot</body></html>", layout=True)
    assert caught.value.message == "The layout has no {{ content }} slot; put exactly one where the message body goes."
    assert caught.value.part == "layout"
    validate("<html><body>{{ content }}</body></html>", layout=True)


def test_a_layout_with_two_content_slots_is_refused():
    with pytest.raises(TemplateError, match="more than one"):
        validate("{{ content }}<hr>{{content}}", layout=True)


def test_prepare_names_the_part_that_failed():
    with pytest.raises(TemplateError) as caught:
        prepare(subject="Hi {{ subscriber.name", body="<p>ok</p>")
    assert caught.value.part == "subject"
    with pytest.raises(TemplateError) as caught:
        prepare(subject="Hi", body="<p>ok</p>", text_body="{% if x %}")
    assert caught.value.part == "text_body"


def test_prepare_refuses_an_unknown_body_format():
    with pytest.raises(TemplateError, match="Unknown body format 'rtf'"):
        prepare(subject="Hi", body="x", body_format="rtf")


# -- the sandbox -----------------------------------------------------------------------


@pytest.mark.parametrize("expression", [
    "subscriber.__class__", "subscriber.__class__.__mro__", "subscriber.items", "subscriber.keys",
    "list.__dict__", "sender.__init__.__globals__", "subscriber.email.__class__",
])
def test_templates_cannot_reach_python_internals(expression):
    rendered = prepare(subject="s", body="[{{ " + expression + " }}]", inline_css=False).render(context())
    assert "[]" in rendered.html


def test_undefined_variables_render_empty():
    rendered = prepare(subject="Hi {{ nobody.name }}!", body="<p>[{{ settings.SECRET_KEY }}]</p>",
                       inline_css=False).render(context())
    assert rendered.subject == "Hi !"
    assert "<p>[]</p>" in rendered.html


def test_an_endless_loop_stops_with_a_template_error():
    prepared = prepare(subject="s", body="{% for i in (1..100000000) %}x{% endfor %}", inline_css=False)
    with pytest.raises(TemplateError) as caught:
        prepared.render(context())
    assert caught.value.message == "Line 1: A loop ran more than 10,000 times."


def test_nested_loops_count_their_iterations_multiplied():
    body = "{% for i in (1..200) %}{% for j in (1..200) %}.{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match="A loop ran more than 10,000 times"):
        prepare(subject="s", body=body, inline_css=False).render(context())


def test_huge_output_is_capped(monkeypatch):
    # On a loaded machine the time limit could fire first; this test is about the size cap.
    monkeypatch.setattr(rendering, "RENDER_TIME_LIMIT", 60)
    body = ("{% assign s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}"
            "{% for i in (1..9000) %}{{ s }}{{ s }}{{ s }}{% endfor %}")
    with pytest.raises(TemplateError) as caught:
        prepare(subject="s", body=body, inline_css=False).render(context())
    assert caught.value.message == "Line 1: The message grew past 2,000,000 characters."


def test_a_variable_doubling_itself_hits_the_namespace_limit():
    body = "{% assign s = 'xx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}"
    with pytest.raises(TemplateError, match="too demanding"):
        prepare(subject="s", body=body, inline_css=False).render(context())


def test_a_render_that_runs_out_of_time_stops(monkeypatch):
    prepared = prepare(subject="s", body="{% for i in (1..9000) %}{{ i }}{% endfor %}", inline_css=False)
    monkeypatch.setattr(rendering, "RENDER_TIME_LIMIT", -1)
    with pytest.raises(TemplateError, match="The template took longer than"):
        prepared.render(context())


def test_a_filter_failing_on_a_subscribers_data_is_a_template_error():
    prepared = prepare(subject="s", body="{{ 10 | divided_by: subscriber.attributes.zero }}", inline_css=False)
    with pytest.raises(TemplateError) as caught:
        prepared.render(context(attributes={"zero": 0}))
    assert caught.value.message == "Line 1: divided_by: can't divide by 0"


# -- rendering ---------------------------------------------------------------------------


def test_the_default_filter_falls_back_for_missing_or_empty_names():
    prepared = prepare(subject="Hi {{ subscriber.first_name | default: \"friend\" }}",
                       body="<p>Dear {{ subscriber.first_name | default: \"friend\" }},</p>", inline_css=False)
    assert prepared.render(context()).subject == "Hi Zoë"
    assert prepared.render(context(first_name="")).subject == "Hi friend"
    no_name = context()
    del no_name["subscriber"]["first_name"]
    assert prepared.render(no_name).subject == "Hi friend"
    assert "<p>Dear friend,</p>" in prepared.render(no_name).html


def test_values_are_escaped_in_html_but_not_in_the_subject_or_text():
    prepared = prepare(subject="For {{ subscriber.name }}", body="<p>For {{ subscriber.name }}</p>" + FOOTER)
    rendered = prepared.render(context(name="Tom & <b>Jerry</b>"))
    assert rendered.subject == "For Tom & <b>Jerry</b>"
    assert "<p>For Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;</p>" in rendered.html
    assert rendered.text.startswith("For Tom & <b>Jerry</b>\n")


def test_the_subject_always_comes_out_as_one_line():
    prepared = prepare(subject="Hello\n{{ subscriber.name }}\r\n  again\t!", body="<p>x</p>")
    assert prepared.render(context(name="Zoë\r\nBcc: x@example.com")).subject == "Hello Zoë Bcc: x@example.com again !"


def test_a_markdown_body_becomes_html_with_its_liquid_intact():
    body = ("# Hello {{ subscriber.first_name }}\n\n"
            "Your plan is **{{ subscriber.attributes.plan }}**. [See it online]({{ view_in_browser_url }}).\n\n"
            "{% if subscriber.attributes.plan == 'gold' %}\n\nThanks for being gold.\n\n{% endif %}\n"
            "{% for item in subscriber.attributes.items %}\n* {{ item }}\n{% endfor %}\n")
    rendered = prepare(subject="s", body=body, body_format="markdown", inline_css=False).render(context())
    assert "<h1>Hello Zoë</h1>" in rendered.html
    assert ('<p>Your plan is <strong>gold</strong>. '
            '<a href="https://mail.example.com/v/tok-1">See it online</a>.</p>') in rendered.html
    assert "\n<p>Thanks for being gold.</p>\n" in rendered.html
    # A loop around a list item repeats the whole one-item list (Markdown semantics).
    assert "<ul>\n<li>tea</li>\n</ul>" in rendered.html and "<ul>\n<li>cake</li>\n</ul>" in rendered.html


def test_a_plain_text_body_becomes_paragraphs_with_links():
    body = "Hi {{ subscriber.first_name }},\nnews at https://example.com/news?a=1&b=2\n\nBye: {{ unsubscribe_url }}"
    rendered = prepare(subject="s", body=body, body_format="text", inline_css=False).render(context())
    assert rendered.html == (
        '<p>Hi Zoë,<br>\nnews at <a href="https://example.com/news?a=1&amp;b=2">https://example.com/news?a=1&amp;b=2</a></p>\n'
        f'<p>Bye: <a href="{UNSUBSCRIBE}">{UNSUBSCRIBE}</a></p>'
    )
    assert rendered.text == f"Hi Zoë,\nnews at https://example.com/news?a=1&b=2\n\nBye: {UNSUBSCRIBE}\n"


def test_the_body_goes_into_the_layout_content_slot():
    layout = "<html><body><div class=\"frame\">{{ content }}</div>" + FOOTER + "</body></html>"
    rendered = prepare(subject="s", body="<p>Inner {{ list.name }}</p>", layout=layout, inline_css=False).render(context())
    assert '<div class="frame"><p>Inner Weekly Letter</p></div>' in rendered.html
    assert "1 Main Street<br />\nSpringfield 12345" in rendered.html


def test_css_is_inlined_once_with_liquid_in_attributes_and_between_table_rows_surviving():
    layout = ("<html><head><style>td { color: #333; } a.button { background: #0a0; }"
              " @media (max-width: 600px) { td { font-size: 14px; } }</style></head>"
              "<body>{{ content }}" + FOOTER + "</body></html>")
    body = ('<table>{% for item in subscriber.attributes.items %}'
            '<tr><td {% if item == "tea" %}class="hot" bgcolor="#f00"{% endif %}>{{ item }}</td></tr>'
            '{% endfor %}</table>'
            '<a class="button" href="{{ view_in_browser_url }}?from={{ subscriber.email }}&amp;x=1">View</a>')
    prepared = prepare(subject="s", body=body, layout=layout)
    assert prepared.warnings == ()
    assert ('<table>{% for item in subscriber.attributes.items %}<tr><td {% if item == "tea" %}'
            'class="hot" bgcolor="#f00"{% endif %} style="color: #333;">{{ item }}</td></tr>{% endfor %}</table>'
            ) in prepared.html_source
    rendered = prepared.render(context())
    assert ('<table><tr><td class="hot" bgcolor="#f00" style="color: #333;">tea</td></tr>'
            '<tr><td  style="color: #333;">cake</td></tr></table>') in rendered.html
    assert ('<a class="button" href="https://mail.example.com/v/tok-1?from=zoe@example.org&amp;x=1" '
            'style="background: #0a0;">View</a>') in rendered.html
    assert "@media (max-width: 600px)" in rendered.html  # kept for mail apps that read <style>


def test_liquid_in_titles_comments_and_unquoted_attributes_survives_inlining():
    body = ("<html><head><title>{{ list.name }}</title><style>a { color: red; }</style></head><body>"
            "<!-- for {{ subscriber.email }} --><a href={{ view_in_browser_url }} title=x{{ list.name }}>view</a>"
            "</body></html>")
    prepared = prepare(subject="s", body=body)
    assert prepared.warnings == ()
    assert prepared.html_source == (
        "<html><head><title>{{ list.name }}</title></head><body><!-- for {{ subscriber.email }} -->"
        '<a href="{{ view_in_browser_url }}" title="x{{ list.name }}" style="color: red;">view</a></body></html>')
    assert '<a href="https://mail.example.com/v/tok-1" title="xWeekly Letter" style="color: red;">view</a>' in (
        prepared.render(context()).html)


def test_with_inline_css_off_the_style_block_stays():
    body = "<html><head><style>p { color: red; }</style></head><body><p>x</p></body></html>"
    rendered = prepare(subject="s", body=body, inline_css=False).render(context())
    assert rendered.html == body


def test_remote_stylesheets_are_not_fetched():
    body = ('<html><head><link rel="stylesheet" href="http://127.0.0.1:9/remote.css"></head>'
            '<body><p>x</p></body></html>')
    prepared = prepare(subject="s", body=body)
    assert prepared.warnings == ()
    assert "<p>x</p>" in prepared.render(context()).html


def test_liquid_naming_an_element_leaves_the_css_as_written_with_a_warning():
    body = "<style>p{color:red}</style><{{ subscriber.attributes.tag }}>x</{{ subscriber.attributes.tag }}>"
    prepared = prepare(subject="s", body=body)
    assert prepared.warnings == (
        "The CSS was not inlined (a Liquid tag names an element); it stays in the <style> block, "
        "which most mail apps still apply.",)
    assert prepared.render(context(attributes={"tag": "b"})).html == "<style>p{color:red}</style><b>x</b>"


def test_the_text_part_is_generated_from_the_html():
    layout = "<html><head><title>t</title></head><body>{{ content }}" + FOOTER + "</body></html>"
    body = ("<h1>Hello {{ subscriber.first_name }}</h1>"
            "<p>Read <a href=\"https://example.com/post\">the post</a> and write to "
            "<a href=\"mailto:help@example.com\">help@example.com</a>.</p>"
            "<ul><li>One</li><li>Two</li></ul><ol><li>First</li><li>Second</li></ol>")
    rendered = prepare(subject="s", body=body, layout=layout).render(context())
    assert rendered.text == (
        "Hello Zoë\n"
        "=========\n"
        "\n"
        "Read the post (https://example.com/post) and write to help@example.com.\n"
        "\n"
        "* One\n"
        "* Two\n"
        "\n"
        "1. First\n"
        "2. Second\n"
        "\n"
        f"Unsubscribe ({UNSUBSCRIBE}) | Preferences ({PREFERENCES})\n"
        "1 Main Street\n"
        "Springfield 12345\n"
    )


def test_the_text_template_is_made_once_even_with_liquid_in_other_attributes():
    body = ('<p style="color: {{ subscriber.attributes.colour }}">Hi {{ subscriber.first_name }}</p>'
            '<img src="{{ sender.logo }}" alt="">' + FOOTER)
    prepared = prepare(subject="s", body=body)
    assert prepared.text_source == (
        "Hi {{ subscriber.first_name }}\n\n"
        "Unsubscribe ({{ unsubscribe_url }}) | Preferences ({{ preferences_url }})\n"
        "{{ sender.postal_address | newline_to_br }}\n")
    assert prepared.render(context()).text.startswith("Hi Zoë\n\nUnsubscribe (")


def test_a_liquid_block_split_between_a_tag_and_text_is_left_as_written():
    body = '<a {% if subscriber.attributes.plan == "gold" %}href="https://example.com/gold">Gold{% else %}>Plain{% endif %}</a>'
    prepared = prepare(subject="s", body=body)
    assert prepared.warnings == (
        "The CSS was not inlined (a Liquid block opens inside a tag and closes outside it); "
        "it stays in the <style> block, which most mail apps still apply.",)
    assert prepared.html_source == body
    assert prepared.text_source is None
    assert prepared.render(context()).text == "Gold (https://example.com/gold)\n"
    assert prepared.render(context(attributes={"plan": "free"})).text == "Plain\n"


def test_the_authors_text_body_is_used_when_given():
    prepared = prepare(subject="s", body="<p>html</p>",
                       text_body="Hi {{ subscriber.first_name | default: 'there' }} & bye\n{{ unsubscribe_url }}")
    assert prepared.render(context()).text == f"Hi Zoë & bye\n{UNSUBSCRIBE}\n"


def test_rewrite_url_is_called_once_per_distinct_link_and_skips_our_own_links():
    body = ('<p><a href="https://example.com/a?x=1&amp;y=2">A</a> <a href="https://example.com/a?x=1&amp;y=2">again</a>'
            " <a href='http://example.com/b'>B</a> <a href=\"mailto:x@example.com\">mail</a>"
            ' <a href="#top">top</a> <a href="{{ preferences_url }}">prefs</a></p>' + FOOTER)
    calls = []

    def rewrite(url):
        calls.append(url)
        return f"https://t.example/c/{len(calls)}?q=1&r=2"

    rendered = prepare(subject="s", body=body, inline_css=False).render(context(), rewrite_url=rewrite)
    assert calls == ["https://example.com/a?x=1&y=2", "http://example.com/b"]
    assert rendered.html.count('href="https://t.example/c/1?q=1&amp;r=2"') == 2
    assert "href='https://t.example/c/2?q=1&amp;r=2'" in rendered.html
    assert f'href="{UNSUBSCRIBE}"' in rendered.html and f'href="{PREFERENCES}"' in rendered.html
    assert 'href="mailto:x@example.com"' in rendered.html and 'href="#top"' in rendered.html
    assert "A (https://t.example/c/1?q=1&r=2) again (https://t.example/c/1?q=1&r=2) B (https://t.example/c/2?q=1&r=2)" in rendered.text
    assert f"Unsubscribe ({UNSUBSCRIBE})" in rendered.text


def test_rewrite_url_leaves_data_attributes_alone_and_keeps_parentheses_in_text_urls():
    body = ('<p><a data-href="https://example.com/data" href="https://en.example.org/wiki/Mail_(protocol)">wiki</a></p>')
    calls = []

    def rewrite(url):
        calls.append(url)
        return "https://t.example/c/1"

    rendered = prepare(subject="s", body=body, inline_css=False,
                       text_body="See https://en.example.org/wiki/Mail_(protocol).").render(context(), rewrite_url=rewrite)
    assert calls == ["https://en.example.org/wiki/Mail_(protocol)"]
    assert rendered.html == '<p><a data-href="https://example.com/data" href="https://t.example/c/1">wiki</a></p>'
    assert rendered.text == "See https://t.example/c/1.\n"


def test_the_open_pixel_goes_just_before_the_end_of_the_body():
    rendered = prepare(subject="s", body="<html><body><p>x</p></body></html>").render(
        context(), open_pixel_url="https://t.example/o/abc?a=1&b=2")
    assert rendered.html.endswith(
        '<p>x</p><img src="https://t.example/o/abc?a=1&amp;b=2" width="1" height="1" alt="" border="0"></body></html>')
    assert "t.example/o" not in rendered.text


def test_prepared_templates_render_many_subscribers_independently():
    prepared = prepare(subject="Hi {{ subscriber.first_name }}", body="<p>{{ subscriber.email }}</p>" + FOOTER)
    first = prepared.render(context(first_name="Ann", email="ann@example.org"))
    second = prepared.render(context(first_name="Ben", email="ben@example.org"))
    assert (first.subject, second.subject) == ("Hi Ann", "Hi Ben")
    assert "ann@example.org" in first.html and "ann@example.org" not in second.html


# -- compliance -----------------------------------------------------------------------------


def rendered_with(footer):
    return prepare(subject="s", body="<p>News</p>" + footer).render(context())


def test_a_compliant_message_has_no_problems():
    rendered = rendered_with(FOOTER)
    assert check_compliance(rendered.html, rendered.text, unsubscribe_url=UNSUBSCRIBE, postal_address=ADDRESS) == []


def test_a_message_without_unsubscribe_link_or_address_is_refused():
    rendered = rendered_with("<p>Thanks for reading</p>")
    assert check_compliance(rendered.html, rendered.text, unsubscribe_url=UNSUBSCRIBE, postal_address=ADDRESS) == [
        "The message has no visible unsubscribe link. Add {{ unsubscribe_url }} as a link.",
        "The plain-text part has no unsubscribe link.",
        "The sender's postal address is missing. Add {{ sender.postal_address }} to the footer.",
        "The plain-text part is missing the sender's postal address.",
    ]


def test_an_unsubscribe_link_without_visible_text_does_not_count():
    rendered = rendered_with('<a href="{{ unsubscribe_url }}"><span></span></a><p>{{ sender.postal_address }}</p>')
    assert check_compliance(rendered.html, rendered.text, unsubscribe_url=UNSUBSCRIBE, postal_address=ADDRESS) == [
        "The message has no visible unsubscribe link. Add {{ unsubscribe_url }} as a link.",
    ]


def test_a_sender_without_postal_address_is_refused():
    rendered = rendered_with(FOOTER)
    assert check_compliance(rendered.html, rendered.text, unsubscribe_url=UNSUBSCRIBE, postal_address="  ") == [
        "The sender has no postal address. Add one in the sender's settings.",
    ]


# -- the text converter on its own ------------------------------------------------------------


def test_html_to_text_handles_quotes_breaks_rules_tables_and_pre():
    html = ("<blockquote><p>Quoted</p></blockquote><p>a<br>b</p><hr>"
            "<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></table>"
            "<pre>  keep\n    indent</pre><script>alert(1)</script><style>p{}</style>"
            "<p><a href=\"https://example.com\">https://example.com</a> <img src=x alt=logo></p>")
    assert html_to_text(html) == (
        "> Quoted\n\na\nb\n\n--------------------\n\n1 2\n3 4\n\n  keep\n    indent\n\nhttps://example.com\n"
    )


# -- the Liquid shield under random templates ---------------------------------------------

FRAGMENTS = [
    "<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", '<td class="a">', "<p>", "</p>", "text & more",
    "{% if subscriber.name %}", "{% else %}", "{% endif %}", "{% for i in subscriber.attributes.items %}",
    "{% endfor %}", "{{ subscriber.name }}", '<a href="{{ unsubscribe_url }}">', "</a>", "<br>",
    '<td {% if subscriber.name %}class="hot"{% endif %}>', "<style>p { color: red; } td { padding: 2px; }</style>",
    "<!-- {{ list.name }} -->", '<img src="{{ sender.logo }}" alt="">', "<ul><li>{{ list.name }}</li></ul>",
]


@hypothesis_settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_inlining_keeps_every_block_tag_in_order_or_leaves_the_template_as_written(parts):
    source = "".join(parts)
    try:
        prepared = prepare(subject="s", body=source)
    except TemplateError:
        return  # unbalanced Liquid: refused at save time, as it should be
    blocks = [tag for tag in LIQUID.findall(source) if tag.startswith("{%")]
    assert [tag for tag in LIQUID.findall(prepared.html_source) if tag.startswith("{%")] == blocks
    rendered = prepared.render(context())
    assert not re.search(r"lq[0-9a-f]{8}n\d+x", rendered.html + rendered.text)  # no placeholder left


# The top-level fast path (rendering._run_steps) must print exactly what Liquid prints.
FAST_PATH_TEMPLATES = [
    "Hi {{ subscriber.first_name | default: 'friend' }}, {{ subscriber.email | upcase }}!",
    "{{ subscriber.attributes.plan }} {{ subscriber.attributes.missing | default: 'none' }}",
    "{{ subscriber.attributes.items }} {{ subscriber.attributes.items.size }} {{ subscriber.attributes.items.first }}",
    "{{ subscriber.attributes.score | plus: 2 }} {{ subscriber.attributes.ok }} {{ subscriber.attributes.none }}",
    "{{ sender.postal_address | newline_to_br }} <{{ subscriber.name | escape }}>",
    "{{ subscriber.name | append: ' & co' | prepend: '<b>' }} {{ nothing.at.all }} {{ list.name.deeper }}",
    "{{ subscriber.first_name | default: 'x', allow_false: true }} {{ subscriber.attributes | size }}",
    "{% if subscriber.attributes.ok %}yes {{ subscriber.first_name }}{% endif %} {{ 'lit' | upcase }}",
    "{{ subscriber.attributes.plan | split: 'o' | join: '-' }} {{ subscriber.name | truncate: 3 }}",
    "{{ subscriber.attributes.score | divided_by: 0 }}",
    # `if` blocks of text and outputs take the fast path too; every kind of truth and falsehood
    "{% if subscriber.attributes.ok %}[{{ subscriber.name }}]{% else %}no{% endif %}",
    "{% if subscriber.attributes.none %}yes{% else %}none is false{% endif %}",
    "{% if subscriber.attributes.missing %}yes{% else %}missing is false{% endif %}",
    "{% if subscriber.attributes.zero %}0 is true{% endif %}{% if subscriber.attributes.emptystr %}'' is true{% endif %}",
    "{% if subscriber.attributes.nothing %}[] is true{% endif %}{% if subscriber.attributes.off %}no{% endif %}",
    "{% if subscriber.attributes.items %}{% if subscriber.attributes.plan %}{{ subscriber.attributes.plan | upcase }}"
    "{% else %}x{% endif %}{% endif %}",
    "{% if subscriber.email.deeper %}a{% else %}b{% endif %} {% if nothing.at.all %}a{% else %}b{% endif %}",
    "{% if subscriber.attributes.items.size %}size{% endif %} {% if subscriber.attributes.items.first %}f{% endif %}",
    "{% if subscriber.attributes.ok %}   {% endif %}|{% if subscriber.attributes.ok %} {% else %}  {% endif %}|",
    "{% if subscriber.attributes.ok %}a{% elsif subscriber.name %}b{% endif %}",
    "{% if subscriber.attributes.ok %}{{ subscriber.attributes.score | divided_by: 0 }}{% endif %}",
    "{% if subscriber.attributes.ok %}{{ subscriber.attributes.items.first }}{% endif %}{% if subscriber %}s{% endif %}",
]


@pytest.mark.parametrize("source", FAST_PATH_TEMPLATES)
@pytest.mark.parametrize("env", [rendering.HTML_ENV, rendering.TEXT_ENV], ids=["html", "text"])
def test_the_fast_path_prints_exactly_what_liquid_prints(source, env):
    data = {
        "subscriber": {"first_name": "Zoë", "email": "zoe@example.com", "name": "<Zoë & \"Al\">",
                       "attributes": {"plan": "gold", "items": ["tea", "cake"], "score": 7, "ok": True,
                                      "none": None, "zero": 0, "emptystr": "", "nothing": [], "off": False}},
        "list": {"name": "News <weekly>"}, "sender": {"postal_address": "1 Road\nTown"},
    }
    template = env.from_string(source)
    assert rendering._steps_of(template) is not None
    try:
        expected = template.render(**data)
    except LiquidError as exc:
        expected = type(exc)
    try:
        got = rendering._render(template, data, "body")
    except rendering.TemplateError as exc:
        got = type(exc.__cause__)
    assert got == expected


def test_an_if_of_text_and_outputs_takes_the_fast_path_and_others_render_through_liquid():
    template = rendering.HTML_ENV.from_string(
        "{% if subscriber.city %}Our {{ subscriber.city }} shop{% else %}Our shops{% endif %}"
        "{% if subscriber.city %}a{% elsif subscriber.name %}b{% endif %}"
        "{% if subscriber.city %}{% for x in subscriber.list %}{{ x }}{% endfor %}{% endif %}")
    assert [type(step).__name__ for step in rendering._steps_of(template)] == ["_FastIf", "IfNode", "IfNode"]
    assert rendering._render(template, {"subscriber": {"city": "Lyon & co", "list": [1]}}, "body") == (
        "Our Lyon &amp; co shopa1")
    assert rendering._render(template, {"subscriber": {"name": "Al"}}, "body") == "Our shopsb"


def test_a_template_that_assigns_renders_through_liquid_itself():
    template = rendering.HTML_ENV.from_string("{% assign subscriber = 'shadow' %}{{ subscriber }}")
    assert rendering._steps_of(template) is None
    assert rendering._render(template, {"subscriber": {"a": 1}}, "body") == "shadow"


@hypothesis_settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="htpsHTPSſ:/()a.\"' <>x\n\t", max_size=60))
def test_text_urls_are_found_exactly_as_the_reference_pattern_finds_them(text):
    text = text.replace("ht", "http://").replace("hs", "https://").replace("HT", "HTTP://").replace("Hſ", "httpſ://")
    expected = rendering._TEXT_URL.sub(lambda m: f"[{m.group()}]", text)
    assert rendering._text_urls(text, lambda url: f"[{url}]") == expected


@pytest.mark.parametrize("text", ["https://) and http://a", "(see https://x.example/a_(b)c).", "https://", "x https://a)(b",
                                  "https://)http://x", "xhttps://a", "HTTPS://A.example/B", "httpſ://x", "ttps://x",
                                  ":// http://", "https://a.example/(x)/https://b)", "https:///"])
def test_text_urls_edge_cases_match_the_reference_pattern(text):
    expected = rendering._TEXT_URL.sub(lambda m: f"[{m.group()}]", text)
    assert rendering._text_urls(text, lambda url: f"[{url}]") == expected
