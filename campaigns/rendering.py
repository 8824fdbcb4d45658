"""
Marketer templates: validate when saved, compile once per batch, render per message.

Templates are written by marketers, so they are rendered only with
python-liquid, in a sandbox: no file system (`include`/`render` are removed),
no Python attributes (Liquid only reads dict keys), and limits on loops,
output size, local variables and time. Everything that does not depend on the
subscriber — Markdown, the layout, CSS inlining, the plain-text version — is
done once in `prepare`; `Prepared.render` only runs Liquid and rewrites links.

The context passed to `render` holds plain dicts and strings: `subscriber`,
`list`, `sender`, `unsubscribe_url`, `preferences_url`, `view_in_browser_url`.
"""

import html as html_lib
import re
import time
from dataclasses import dataclass
from io import StringIO
from types import SimpleNamespace

import css_inline
import markdown
from liquid import Environment
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import BooleanExpression, FilteredExpression, Path
from liquid.builtin.expressions.arguments import KeywordArgument
from liquid.builtin.expressions.primitive import Literal
from liquid.builtin.output import OutputNode
from liquid.builtin.tags.if_tag import IfNode
from liquid.context import RenderContext
from liquid.exceptions import (
    LiquidError,
    LiquidInterrupt,
    LiquidSyntaxError,
    LoopIterationLimitError,
    OutputStreamLimitError,
    ResourceLimitError,
    StopRender,
)
from liquid.stringify import to_liquid_string
from markupsafe import escape as _escape

from . import textify
from .shield import LIQUID, Shield, ShieldError, hide_in_html

# Limits for one render of one part. A typical message renders in well under a
# millisecond; these only stop a template that would loop or grow without end.
RENDER_TIME_LIMIT = 0.5  # seconds
LOOP_LIMIT = 10_000  # iterations, nested loops multiplied
OUTPUT_LIMIT = 2_000_000  # characters of output
NAMESPACE_LIMIT = 1_000_000  # bytes held by {% assign %} / {% capture %}
SUBJECT_LIMIT = 998  # a subject longer than a header line is not a subject

BODY_FORMATS = ("html", "markdown", "text")
_URL_OUTPUT = re.compile(r"\{\{-?\s*\w*url\s*-?\}\}")
_CONTENT_SLOT = re.compile(r"\{\{-?\s*content\s*-?\}\}")
_A_HREF = r"<a\s(?:[^>]*?\s)?href\s*=\s*"  # the href of a link, not a data-href
_HREF = re.compile(rf"""({_A_HREF})(?:"(https?://[^"]*)"|'(https?://[^']*)')""", re.I)
_LINK = re.compile(rf"""{_A_HREF}(?:"([^"]*)"|'([^']*)')[^>]*>(.*?)</a\s*>""", re.I | re.S)
# A URL in the text part; it may hold balanced parentheses (…/wiki/Mail_(protocol)).
_TEXT_URL = re.compile(r"https?://(?:[^\s<>()\"']|\([^\s<>()\"']*\))+", re.I)
# The same URLs found in two steps (see _text_urls): a plain character class runs in C,
# the alternation above costs a Python-level step per character (70 µs a message).
_TEXT_URL_RUN = re.compile(r"https?://[^\s<>\"']+", re.I)
_TRAILING_PUNCTUATION = ".,;:!?"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BODY_END = re.compile(r"</body\s*>", re.I)
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACES = re.compile(r"[ \t]+\n")
_UNDERLINE = re.compile(r"^(.+)\n(=+|-+)$", re.M)


class TemplateError(ValueError):
    """A template that cannot be saved or rendered, with a message for its author."""

    def __init__(self, message, *, line=None, part=None):
        self.line = line
        self.part = part
        self.message = f"Line {line}: {message}" if line else message
        super().__init__(self.message)


class _SandboxEnvironment(Environment):
    loop_iteration_limit = LOOP_LIMIT
    output_stream_limit = OUTPUT_LIMIT
    local_namespace_limit = NAMESPACE_LIMIT
    context_depth_limit = 10

    def setup_tags_and_filters(self, *, extra=False):
        super().setup_tags_and_filters(extra=extra)
        # Templates and layouts arrive as strings; nothing is read from a loader.
        for name in ("include", "render"):
            self.tags.pop(name, None)


class _TextEnvironment(_SandboxEnvironment):
    def setup_tags_and_filters(self, *, extra=False):
        super().setup_tags_and_filters(extra=extra)
        # The text part is derived from the HTML template, so HTML-only filters
        # must leave plain text alone: `{{ address | newline_to_br }}` keeps its newlines.
        for name in ("newline_to_br", "escape", "escape_once"):
            self.filters[name] = _unchanged


def _unchanged(value, *_args):
    return "" if value is None else str(value)


# HTML escapes every value it prints; subjects and text parts print them as they are.
HTML_ENV = _SandboxEnvironment(autoescape=True)
TEXT_ENV = _TextEnvironment(autoescape=False)
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


class _RenderTimeout(ResourceLimitError):
    pass


class _DeadlineBuffer(StringIO):
    """
    The output of one render: stops at the size limit (in characters) or the deadline.

    Liquid's own LimitedStringIO encodes every write to count bytes, which cost
    more than the rest of the render; characters are as good a limit here.
    """

    def __init__(self, deadline, limit=OUTPUT_LIMIT):
        super().__init__()
        self.deadline = deadline
        self.limit = limit
        self.size = 0
        self.writes = 0

    def write(self, text):
        self.size += len(text)
        if self.size > self.limit:
            raise OutputStreamLimitError("output stream limit reached", token=None)
        # The clock every 16th write: reading it on each one was a tenth of a render.
        self.writes += 1
        if not self.writes & 15 and time.monotonic() > self.deadline:
            raise _RenderTimeout("render time limit reached", token=None)
        return super().write(text)


class _DeadlineContext(RenderContext):
    """A render context whose loops and captures also respect the deadline."""

    __slots__ = ("deadline",)

    def raise_for_loop_limit(self, length=1):
        super().raise_for_loop_limit(length)
        if time.monotonic() > self.deadline:
            raise _RenderTimeout("render time limit reached", token=None)

    def get_buffer(self, buf=None):
        carry = buf.size if isinstance(buf, _DeadlineBuffer) else 0
        return _DeadlineBuffer(self.deadline, OUTPUT_LIMIT - carry)


_LIMIT_MESSAGES = {
    LoopIterationLimitError: f"A loop ran more than {LOOP_LIMIT:,} times.",
    OutputStreamLimitError: f"The message grew past {OUTPUT_LIMIT:,} characters.",
    _RenderTimeout: f"The template took longer than {RENDER_TIME_LIMIT} seconds to render.",
}


def _context(template, data, deadline):
    context = _DeadlineContext(template, globals=template.make_globals(data))
    context.deadline = deadline
    return context


def _render(template, data, part):
    if isinstance(template, str):  # no Liquid in it: nothing to do per message
        return template
    deadline = time.monotonic() + RENDER_TIME_LIMIT
    buffer = _DeadlineBuffer(deadline)
    steps = _steps_of(template)
    try:
        if steps is None:
            template.render_with_context(_context(template, data, deadline), buffer)
        else:
            _run_steps(template, steps, data, deadline, buffer)
    except LiquidError as exc:
        message = _LIMIT_MESSAGES.get(type(exc), "The template is too demanding to render.")
        if not isinstance(exc, ResourceLimitError):
            message = str(exc.message)
        raise TemplateError(message, line=_line_of(exc), part=part) from exc
    return buffer.getvalue()


# -- the fast path for the top level of a template ------------------------------------
#
# Most of a message is text and `{{ path | filter: "literal" }}` outputs at the top
# level. Liquid renders each through several layers (a chain-map lookup per path
# segment, a filter lookup per filter, a buffer write per text node); here the
# top-level nodes are compiled once into plain steps: text merged into one string
# per run, outputs of plain dict paths with literal filter arguments evaluated
# directly with the same filter functions and the same stringifier. Anything else
# (tags, special keys such as `size`, a value that is not a dict on the way) goes
# through the node's own render, so the output is exactly Liquid's. Measured on the
# render benchmark's template (bench/render.py), one core: 0.55 → 0.46 ms a message
# for the whole render (Liquid, links, pixel), the outputs being about a third of it.

_SPECIAL_KEYS = frozenset({"size", "first", "last"})


class _FastOutput:
    """One top-level `{{ … }}` whose path and filter arguments are known when compiled."""

    __slots__ = ("node", "root", "keys", "filters", "autoescape")

    def __init__(self, node, root, keys, filters, autoescape):
        self.node, self.root, self.keys, self.filters, self.autoescape = node, root, keys, filters, autoescape

    def value(self, data):
        """The output's text, or None when the path needs Liquid's own lookup."""
        obj = _lookup(data, self.root, self.keys)
        if obj is _MISSING or obj is _UNDEFINED:  # Liquid's own render prints (or refuses) undefined
            return None
        for func, args, kwargs in self.filters:
            obj = func(obj, *args, **kwargs)
        if type(obj) is str:  # what to_liquid_string does with a plain string, without its type checks
            return _escape(obj) if self.autoescape else obj
        return to_liquid_string(obj, self.autoescape)


_MISSING = object()  # _lookup: Liquid's own lookup must decide
_UNDEFINED = object()  # _lookup: a dict on the path lacks the key (Liquid's undefined)


def _plain_path(expression):
    """(root, keys) of a path of plain names, which _lookup can follow in dicts, else None."""
    if type(expression) is not Path or not all(type(s) is str for s in expression.path):
        return None
    root, *keys = expression.path
    if any(key in _SPECIAL_KEYS for key in keys):
        return None
    return root, tuple(keys)


def _lookup(data, root, keys):
    """The value at root.keys… in plain dicts; _UNDEFINED where a dict lacks the key; _MISSING where
    Liquid's own lookup must decide (no such root, or a value on the way that is not a dict)."""
    obj = data.get(root, _MISSING)
    for key in keys:
        if type(obj) is not dict:
            return _MISSING
        obj = obj.get(key, _UNDEFINED)
        if obj is _UNDEFINED:
            return _UNDEFINED
    return obj


def _literal_args(arguments, env):
    # A literal's value depends only on autoescaping (a string literal is markup-safe in HTML).
    settings = SimpleNamespace(autoescape=env.autoescape)
    args, kwargs = [], {}
    for argument in arguments:
        if not isinstance(argument.value, Literal):
            return None
        if isinstance(argument, KeywordArgument):
            kwargs[argument.name] = argument.value.evaluate(settings)
        else:
            args.append(argument.value.evaluate(settings))
    return args, kwargs


def _fast_output(node, env):
    if type(node) is not OutputNode or type(node.expression) is not FilteredExpression:
        return None
    expression = node.expression
    path = _plain_path(expression.left)
    if path is None:
        return None
    filters = []
    for item in expression.filters or ():
        func = env.filters.get(item.name)
        literal = _literal_args(item.args, env)
        if func is None or literal is None or getattr(func, "with_context", False):
            return None
        kwargs = dict(literal[1], **({"environment": env} if getattr(func, "with_environment", False) else {}))
        filters.append((func, literal[0], kwargs))
    return _FastOutput(node, *path, filters, env.autoescape)


class _FastIf:
    """A top-level `{% if path %}…{% else %}…{% endif %}` whose blocks are text and fast outputs:
    its branch chosen from plain dicts, by Liquid's truthiness (only nil, false and a missing key
    are false). Made a Liquid render context per message for the shop template's one `if`
    (about 8 us in each of the HTML and text parts). When the path needs Liquid's own lookup,
    the node renders itself."""

    __slots__ = ("node", "root", "keys", "then", "otherwise")

    def __init__(self, node, root, keys, then, otherwise):
        self.node, self.root, self.keys, self.then, self.otherwise = node, root, keys, then, otherwise

    def branch(self, data):
        """The steps of the branch taken, or None when Liquid must decide."""
        obj = _lookup(data, self.root, self.keys)
        if obj is _MISSING:
            return None
        if obj is _UNDEFINED or obj is False or obj is None:
            return self.otherwise
        # Anything else is true, except an object with its own idea (__liquid__): Liquid decides.
        return self.then if type(obj) in _PLAIN_TYPES else None


_PLAIN_TYPES = frozenset({str, int, float, bool, list, dict})


def _block_steps(block, env):
    """A block's nodes as steps (str | _FastOutput | _FastIf), or None if any needs Liquid."""
    steps = []
    for node in block.nodes:
        step = node.text if type(node) is ContentNode else (_fast_output(node, env) or _fast_if(node, env))
        if step is None:
            return None
        steps.append(step)
    return steps


def _fast_if(node, env):
    if type(node) is not IfNode or node.alternatives or node.blank:  # a blank block prints nothing
        return None
    condition = node.condition
    path = _plain_path(condition.expression) if type(condition) is BooleanExpression else None
    if path is None:
        return None
    then = _block_steps(node.consequence, env)
    otherwise = _block_steps(node.default, env) if node.default is not None else []
    if then is None or otherwise is None:
        return None
    return _FastIf(node, *path, then, otherwise)


def _compile_steps(template):
    """The top-level nodes as steps (str | _FastOutput | node), or None when the template
    assigns variables (an assigned name could shadow a context value)."""
    analysis = template.analyze(include_partials=False)
    if analysis.locals or {"increment", "decrement"} & set(analysis.tags):
        return None
    steps = []
    for node in template.nodes:
        step = node.text if type(node) is ContentNode else (
            _fast_output(node, template.env) or _fast_if(node, template.env) or node)
        if isinstance(step, str) and steps and isinstance(steps[-1], str):
            steps[-1] += step
        else:
            steps.append(step)
    return steps


def _steps_of(template):
    try:
        return template._autoresponder_steps
    except AttributeError:
        template._autoresponder_steps = steps = _compile_steps(template)
        return steps


def _run_steps(template, steps, data, deadline, buffer):
    """What `template.render_with_context` does, with the compiled steps (see above). Text is
    gathered and written at once (a write per step was a tenth of the render); the buffer's
    limits still see it before any node Liquid renders itself. Liquid's render context is made
    only for the first node that needs it (a subject of text and outputs needs none)."""
    parts, context = [], None
    pending = list(reversed(steps))  # a stack: a fast `if` puts its branch's steps on top
    while pending:
        step = pending.pop()
        if type(step) is str:
            parts.append(step)
            continue
        if type(step) is _FastIf:
            branch = step.branch(data)
            if branch is not None:
                pending.extend(reversed(branch))
                continue
            step = step.node
        elif type(step) is _FastOutput:
            try:
                text = step.value(data)
            except Exception:  # noqa: BLE001 - Liquid's own render below raises the author's error
                text = None
            if text is not None:
                parts.append(text)
                continue
            step = step.node
        if parts:
            buffer.write("".join(parts))
            parts = []
        if context is None:
            context = _context(template, data, deadline)
        try:
            step.render(context, buffer)
        except LiquidInterrupt as err:
            template.env.error(LiquidSyntaxError(f"unexpected '{err}'", token=step.token))
        except StopRender:
            break
        except LiquidError as err:
            template.env.error(err, token=step.token)
    if parts:
        buffer.write("".join(parts))


# -- validation --------------------------------------------------------------------


def _line_of(exc):
    context = exc.context() if isinstance(exc, LiquidError) else None
    return context[0] if context else None


def _parse(source, env, part):
    try:
        template = env.from_string(source)
    except LiquidError as exc:
        raise TemplateError(_plain(exc), line=_line_of(exc), part=part) from exc
    unknown = sorted(set(template.filter_names()) - set(env.filters))
    if unknown:
        raise TemplateError(f"unknown filter '{unknown[0]}'", line=_filter_line(source, unknown[0]), part=part)
    return template


def _plain(exc):
    message = str(exc.message)
    if message.startswith("unexpected tag '") or message.startswith("unknown tag '"):
        name = message.split("'")[1]
        if name in ("include", "render"):
            return f"the '{name}' tag is not available; paste the content into the template"
    return message


def _filter_line(source, name):
    match = re.search(r"\|\s*" + re.escape(name) + r"\b", source)
    return source.count("\n", 0, match.start()) + 1 if match else None


def validate(source, *, layout=False, part=None):
    """
    Raise TemplateError if `source` is not a template we can render.

    With `layout=True`, also require exactly one `{{ content }}` slot for the body.
    """
    _parse(source, HTML_ENV, part or ("layout" if layout else "body"))
    if layout:
        slots = len(_CONTENT_SLOT.findall(source))
        if slots != 1:
            problem = "has no" if slots == 0 else "has more than one"
            raise TemplateError(
                f"The layout {problem} {{{{ content }}}} slot; put exactly one where the message body goes.",
                part=part or "layout",
            )


# -- compiling once ----------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def prepare(*, subject, body, body_format="html", text_body="", layout=None, inline_css=True):
    """
    Compile one template for a batch: Liquid parsed, Markdown converted, layout
    applied, CSS inlined and the text version derived, all once.

    Raises TemplateError (with `.part` set to "subject", "body", "text_body" or
    "layout") when any part does not validate.
    """
    if body_format not in BODY_FORMATS:
        raise TemplateError(f"Unknown body format {body_format!r}; use one of {', '.join(BODY_FORMATS)}.")
    subject_template = _parse(subject, TEXT_ENV, "subject")
    validate(body, part="body")
    if layout is not None:
        validate(layout, layout=True)
    source = _wrap(_to_html(body, body_format), layout)
    html_source, text_source, warnings = _process(source, inline_css)
    html_template = _parse(html_source, HTML_ENV, "layout" if layout else "body")
    if text_body.strip():
        text_source, text_template = text_body, _parse(text_body, TEXT_ENV, "text_body")
    else:
        text_source, text_template = _parse_or_none(text_source)
    prepared = Prepared(_static_or(subject, subject_template), html_template,
                        text_template, html_source, tuple(warnings))
    prepared.text_source = text_source
    # Only a converted heading's underline needs measuring again per message.
    prepared.fit_underlines = (not text_body.strip() and text_template is not None
                               and bool(_UNDERLINE.search(text_source)))
    return prepared


def _static_or(source, template):
    return source if not LIQUID.search(source) else template


def _to_html(body, body_format):
    if body_format == "html":
        return body
    shield = Shield()
    if body_format == "markdown":
        converted = markdown.markdown(shield.hide_in_markdown(body), extensions=["extra", "sane_lists"])
    else:
        converted = _text_to_html(shield.hide_words(body), shield)
    try:
        return shield.restore(converted)
    except ShieldError as exc:
        raise TemplateError(
            "The Markdown conversion lost a Liquid tag; keep Liquid tags out of link "
            "definitions and HTML comments.", part="body") from exc


def _text_to_html(text, shield):
    """Plain-text bodies: paragraphs on blank lines, bare URLs (and `{{ …_url }}`) as links."""
    words = re.compile(rf"https?://[^\s<>\"']+|{shield.nonce}\d+x")

    def link(match):
        word = match.group()
        if word.startswith(shield.nonce) and not _URL_OUTPUT.fullmatch(shield.original(word)):
            return word
        return f'<a href="{word}">{word}</a>'

    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text.strip()):
        escaped = words.sub(link, html_lib.escape(block, quote=False))
        paragraphs.append("<p>" + escaped.replace("\n", "<br>\n") + "</p>")
    return "\n".join(paragraphs)


def _wrap(body_html, layout):
    if layout is None:
        return body_html
    return _CONTENT_SLOT.sub(lambda _m: body_html, layout, count=1)


def _process(source, inline_css):
    """Return (html template, text template or None, warnings) for the combined source."""
    warnings = []
    shield = Shield()
    try:
        hidden = hide_in_html(source, shield)
    except ShieldError as exc:
        return source, None, [_not_inlined(exc)]
    html_source = source
    if inline_css:
        try:
            inlined = _drop_implied_tbody(_INLINER.inline(hidden), source)
            html_source = shield.restore(inlined)
            hidden = inlined
        except (ShieldError, css_inline.InlineError, ValueError) as exc:
            warnings.append(_not_inlined(exc))
    # Not strict: tags that stood in attributes other than href (`style="{{ … }}"`,
    # `<img src="{{ … }}">`) have no place in the text; the parse below checks the rest.
    text = textify.html_to_text(hidden, keep_comment=shield.is_placeholder)
    return html_source, shield.restore(text, strict=False), warnings


def _not_inlined(exc):
    return (f"The CSS was not inlined ({exc}); it stays in the <style> block, "
            "which most mail apps still apply.")


def _drop_implied_tbody(inlined, source):
    """
    The HTML parser adds `<tbody>` to every table; with a `{% for %}` between
    `<table>` and `<tr>` it would open one per row. The author wrote none, and
    HTML does not need them, so they go.
    """
    if "<tbody" in source.lower() or inlined.count("<tbody>") != inlined.count("<tbody"):
        return inlined
    return inlined.replace("<tbody>", "").replace("</tbody>", "")


def _parse_or_none(text_source):
    """(source, template) of the generated text, or (None, None) if it does not parse."""
    if text_source is None:
        return None, None
    try:
        return text_source, _parse(text_source, TEXT_ENV, "text")
    except TemplateError:
        # The HTML's Liquid tags do not survive as text (an {% if %} opened inside
        # an attribute, closed outside): each message's text then comes from its HTML.
        return None, None


# -- rendering per message -----------------------------------------------------------


class Prepared:
    """A compiled template; `render` is the only per-message work."""

    def __init__(self, subject, html, text, html_source, warnings):
        self._subject = subject
        self._html = html
        self._text = text
        self.html_source = html_source  # after layout and CSS inlining, for previews
        self.text_source = None  # the text part's template, None when derived per message
        self.warnings = warnings
        self.fit_underlines = False

    def render(self, context, *, rewrite_url=None, open_pixel_url=None):
        """
        Render one message for `context` (plain dicts and strings).

        `rewrite_url(url) -> str` is called once per distinct http(s) link in the
        message, except the unsubscribe and preferences links; it returns the
        tracked URL (it may differ per message). Raises TemplateError when the
        template breaks a limit or a filter fails on this subscriber's data.
        """
        subject = _one_line(_render(self._subject, context, "subject"))
        html = _render(self._html, context, "body")
        text = _render(self._text, context, "text") if self._text is not None else None
        if text is not None:
            text = _tidy_text(text)
            if self.fit_underlines:
                text = _UNDERLINE.sub(_fit_underline, text)
        if rewrite_url is not None:
            links = _Links(rewrite_url, context)
            html = _HREF.sub(links.replace_href, html)
            text = _text_urls(text, links.replace_text) if text is not None else None
        if text is None:
            text = textify.html_to_text(html)
        if open_pixel_url:
            html = _add_pixel(html, open_pixel_url)
        return Rendered(subject, html, text)


class _Links:
    """Rewrites the links of one message, calling `rewrite_url` once per URL."""

    def __init__(self, rewrite_url, context):
        self.rewrite_url = rewrite_url
        self.skipped = {context.get("unsubscribe_url"), context.get("preferences_url")}
        self.done = {}

    def rewrite(self, url):
        new = self.done.get(url)
        if new is None:
            new = self.done[url] = url if url in self.skipped else self.rewrite_url(url)
        return new

    def replace_href(self, match):
        written = match.group(2) if match.group(2) is not None else match.group(3)
        # Not cached across messages: the per-message links (unsubscribe, view in browser) made such
        # a cache grow by every message a worker sent (worker RSS 121 → 180 MB over 500,000 messages).
        url = html_lib.unescape(written) if "&" in written else written
        quote = '"' if match.group(2) is not None else "'"
        new = self.rewrite(url)
        if new == url:
            return match.group()
        return f"{match.group(1)}{quote}{html_lib.escape(new)}{quote}"

    def replace_text(self, url):
        stripped = url.rstrip(_TRAILING_PUNCTUATION)
        return self.rewrite(stripped) + url[len(stripped):]


_PAREN = re.compile(r"[()]")


def _balanced_length(run):
    """How much of `run` _TEXT_URL would take: parentheses only as balanced, unnested pairs."""
    i = 0
    while (paren := _PAREN.search(run, i)) is not None:
        i = paren.start()
        if run[i] == ")":
            return i
        close = run.find(")", i + 1)
        if close == -1 or "(" in run[i + 1:close]:
            return i
        i = close + 1
    return len(run)


def _text_urls(text, replace):
    """`_TEXT_URL.sub(lambda m: replace(m.group()), text)`, faster."""
    parts, position = [], 0
    search_from = 0
    while (match := _TEXT_URL_RUN.search(text, search_from)) is not None:
        start = match.start()
        end = start + _balanced_length(match.group())
        if end <= text.index("//", start) + 2:  # nothing after the scheme: no URL starts here
            search_from = start + 1
            continue
        parts += [text[position:start], replace(text[start:end])]
        position = search_from = end
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)


def _tidy_text(text):
    # Liquid tags on lines of their own leave blank lines behind. The substring
    # checks skip the regex passes for the usual text, which needs neither.
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACES.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip() + "\n"


def _fit_underline(match):
    # The converter measured the heading with its Liquid tags; measure it rendered.
    title, mark = match.group(1), match.group(2)[0]
    return f"{title}\n{mark * min(len(title.strip()), 72)}"


def _one_line(subject):
    subject = " ".join(_CONTROL.sub(" ", subject).split())
    return subject[:SUBJECT_LIMIT]


def _add_pixel(html, url):
    pixel = f'<img src="{html_lib.escape(url)}" width="1" height="1" alt="" border="0">'
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + pixel
    at = ends[-1].start()
    return html[:at] + pixel + html[at:]


# -- compliance ------------------------------------------------------------------


_TAGS = re.compile(r"<[^>]*>")
_BREAKS = re.compile(r"<br\s*/?>|</p>|</div>|</td>|</tr>", re.I)


def _visible_text(html):
    text = _TAGS.sub(" ", _BREAKS.sub(" ", _strip_head(html)))
    return " ".join(html_lib.unescape(text).split())


def _strip_head(html):
    return re.sub(r"<(head|style|script)\b.*?</\1\s*>", " ", html, flags=re.I | re.S)


def _has_link_to(html, url):
    for match in _LINK.finditer(html):
        href = html_lib.unescape(match.group(1) if match.group(1) is not None else match.group(2))
        if href == url and _visible_text(match.group(3)):
            return True
    return False


def check_compliance(html, text, *, unsubscribe_url, postal_address):
    """
    Return the problems that forbid sending a rendered message (an empty list
    when it may go out): a visible unsubscribe link and the sender's postal
    address in both parts.
    """
    problems = []
    if not _has_link_to(html, unsubscribe_url):
        problems.append("The message has no visible unsubscribe link. Add {{ unsubscribe_url }} as a link.")
    if unsubscribe_url not in text:
        problems.append("The plain-text part has no unsubscribe link.")
    address = " ".join(postal_address.split())
    if not address:
        problems.append("The sender has no postal address. Add one in the sender's settings.")
    else:
        if address not in _visible_text(html):
            problems.append("The sender's postal address is missing. Add {{ sender.postal_address }} to the footer.")
        if address not in " ".join(text.split()):
            problems.append("The plain-text part is missing the sender's postal address.")
    return problems
