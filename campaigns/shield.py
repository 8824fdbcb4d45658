"""
Hide Liquid tags from HTML and Markdown processors, and bring them back.

CSS inlining and Markdown conversion parse the *template*, once per template,
not the rendered message. Their parsers would mangle `{{ … }}` and `{% … %}`
(an HTML5 parser moves text found between table rows out of the table, drops
duplicate attributes, reorders attributes), so every Liquid tag is swapped for
a placeholder the processor leaves alone, picked by where the tag stands:

- in text content: an HTML comment `<!--lq…-->` (comments stay where they are,
  even between `<tr>`s, where text would be moved out of the table);
- inside an attribute value, a comment, `<style>`, `<title>`…: a bare word;
- among a tag's attributes (`<td {% if x %}class="a"{% endif %}>`): everything
  from the first to the last Liquid tag inside that start tag becomes ONE
  attribute, so the parser cannot separate an `{% if %}` from its `{% endif %}`.

`restore` checks that the processor kept every placeholder (and every block
tag exactly once, in order); the caller falls back to the unprocessed source
when it did not.
"""

import re
import secrets

LIQUID = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.S)
_BLOCK_LINE = re.compile(r"^[ \t]*(\{%.*?%\})[ \t]*$", re.M)
_BLOCK_NAME = re.compile(r"\{%-?\s*(\w+)")
_BLOCKS = frozenset({"if", "unless", "for", "case", "capture", "tablerow", "comment", "raw", "ifchanged"})
_TAG_NAME = re.compile(r"</?([a-zA-Z][a-zA-Z0-9:-]*)")
# Elements whose content the HTML parser reads as raw text: no comments there.
_RAW_TEXT = frozenset({"style", "script", "title", "textarea", "xmp", "noembed"})

DATA, TAG, QUOTED, COMMENT, RAW = "data", "tag", "quoted", "comment", "raw"
NO_VALUE, AWAITED, UNQUOTED = 0, 1, 2


class ShieldError(ValueError):
    """The processor lost or reordered a Liquid tag; use the unprocessed source."""


class Shield:
    """The placeholders of one template: `lq<nonce>n<i>x` stands for tag i."""

    def __init__(self):
        self.nonce = "lq" + secrets.token_hex(4) + "n"
        self.originals = []
        self._outputs = {}
        self.pattern = re.compile(rf"<!--{self.nonce}(\d+)x-->|{self.nonce}(\d+)x(?:=\"\")?")

    def word(self, liquid):
        # The same output tag gets the same placeholder, so the text converter
        # sees `<a href="{{ url }}">{{ url }}</a>` as a link showing its own URL.
        index = self._outputs.get(liquid) if liquid.startswith("{{") else None
        if index is None:
            self.originals.append(liquid)
            index = len(self.originals) - 1
            if liquid.startswith("{{"):
                self._outputs[liquid] = index
        return f"{self.nonce}{index}x"

    def comment(self, liquid):
        return f"<!--{self.word(liquid)}-->"

    def original(self, word):
        return self.originals[int(word[len(self.nonce):-1])]

    def is_placeholder(self, text):
        return text.startswith(self.nonce) and text.endswith("x")

    def hide_words(self, source):
        """Plain text: every Liquid tag becomes a bare word."""
        return LIQUID.sub(lambda m: self.word(m.group()), source)

    def hide_in_markdown(self, source):
        """
        Markdown: a block tag alone on its line becomes an HTML comment block (so
        `{% if %}` around paragraphs adds no empty `<p>`); other tags become words.
        """
        source = _BLOCK_LINE.sub(lambda m: "\n\n" + self.comment(m.group(1)) + "\n\n", source)
        return self.hide_words(source)

    def restore(self, text, *, strict=True):
        """Put the Liquid tags back; with `strict`, refuse a lost or reordered block tag."""
        seen = []

        def put_back(match):
            index = int(match.group(1) or match.group(2))
            seen.append(index)
            return self.originals[index]

        restored = self.pattern.sub(put_back, text)
        if strict:
            self._check(seen)
        return restored

    def _check(self, seen):
        if set(seen) != set(range(len(self.originals))):
            raise ShieldError("a Liquid tag was lost")
        # Output tags may be copied (a `{{ colour }}` inside a CSS rule lands on
        # every matching element); block tags must stay single and in order.
        blocks = [i for i in seen if not self.originals[i].startswith("{{")]
        if blocks != sorted(set(blocks)):
            raise ShieldError("a Liquid block tag was copied or moved")


class _HtmlScanner:
    """Just enough of the HTML tokenizer to know where the next Liquid tag stands."""

    def __init__(self):
        self.state = DATA
        self.tag_id = 0  # counts start/end tags, so a run knows its own tag
        self.tag_name = ""
        self.is_end_tag = False
        self.quote = ""
        self.value = NO_VALUE  # where we are in an attribute: name, after "=", value
        self.raw_end = ""
        self.dangling_open = False  # a chunk ended right after "<" or "</"

    def feed(self, text):
        i, n = 0, len(text)
        while i < n:
            i = getattr(self, "_" + self.state)(text, i)
        if text:
            self.dangling_open = text.endswith("<") or text.endswith("</")

    def _data(self, text, i):
        lt = text.find("<", i)
        if lt < 0:
            return len(text)
        if text.startswith("<!--", lt):
            self.state = COMMENT
            return lt + 4
        match = _TAG_NAME.match(text, lt)
        if match:
            self._enter_tag(match)
            return match.end()
        if text.startswith("<!", lt) or text.startswith("<?", lt):
            self._enter_tag(None)
            return lt + 2
        return lt + 1

    def _enter_tag(self, match):
        self.state = TAG
        self.tag_id += 1
        self.tag_name = match.group(1).lower() if match else ""
        self.is_end_tag = bool(match) and match.group().startswith("</")
        self.value = NO_VALUE

    def _tag(self, text, i):
        n = len(text)
        while i < n:
            char = text[i]
            if char == ">":
                self._leave_tag()
                return i + 1
            if char in "\"'":
                self.state, self.quote, self.value = QUOTED, char, NO_VALUE
                return i + 1
            if char == "=":
                self.value = AWAITED
            elif char.isspace():
                if self.value == UNQUOTED:
                    self.value = NO_VALUE
            elif self.value == AWAITED:
                self.value = UNQUOTED
            i += 1
        return n

    def _leave_tag(self):
        if self.tag_name in _RAW_TEXT and not self.is_end_tag:
            self.state, self.raw_end = RAW, "</" + self.tag_name
        else:
            self.state = DATA

    def _quoted(self, text, i):
        end = text.find(self.quote, i)
        if end < 0:
            return len(text)
        self.state = TAG
        return end + 1

    def _comment(self, text, i):
        end = text.find("-->", i)
        if end < 0:
            return len(text)
        self.state = DATA
        return end + 3

    def _raw(self, text, i):
        end = text.lower().find(self.raw_end, i)
        if end < 0:
            return len(text)
        self._enter_tag(_TAG_NAME.match(text, end))
        return end + len(self.raw_end)


def hide_in_html(source, shield):
    """
    Return `source` with every Liquid tag replaced by a placeholder fit for its place.

    Raises ShieldError where no placeholder can stand in (a Liquid tag naming
    an element, `<{{ tag }}>`): such templates are used without processing.
    """
    scanner = _HtmlScanner()
    out, done, run = [], 0, None  # run: [start, end, tag_id] of an attribute run
    for match in LIQUID.finditer(source):
        scanner.feed(source[done if run is None else run[1]:match.start()])
        if scanner.dangling_open and scanner.state == DATA:
            raise ShieldError("a Liquid tag names an element")
        if run is not None and scanner.state in (TAG, QUOTED) and scanner.tag_id == run[2]:
            run[1] = match.end()
            continue
        if run is not None:
            out.append(_run_word(source[run[0]:run[1]], shield))
            done, run = run[1], None
        out.append(source[done:match.start()])
        done = match.end()
        if scanner.state == TAG and scanner.value == NO_VALUE:
            run = [match.start(), match.end(), scanner.tag_id]
        elif scanner.state == DATA:
            out.append(shield.comment(match.group()))
        else:
            out.append(shield.word(match.group()))
            if scanner.state == TAG:
                scanner.value = UNQUOTED  # the tag is (part of) an unquoted value
    if run is not None:
        out.append(_run_word(source[run[0]:run[1]], shield))
        done = run[1]
    out.append(source[done:])
    return "".join(out)


def _run_word(run, shield):
    """One attribute standing for a run of Liquid among a tag's attributes."""
    names = [m.group(1) for m in _BLOCK_NAME.finditer(run)]
    opened = sum(1 for name in names if name in _BLOCKS)
    closed = sum(1 for name in names if name.startswith("end"))
    if opened != closed:
        # `<a {% if x %}href="…">A{% else %}>B{% endif %}`: the tag's end depends
        # on the branch, which no HTML parser can see.
        raise ShieldError("a Liquid block opens inside a tag and closes outside it")
    return f" {shield.word(run)} "
