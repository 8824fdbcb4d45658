"""
A small HTML → plain-text converter for the text part of every message.

Written here rather than taken from html2text (GPL). It keeps what a reader
of the plain part needs: paragraphs, headings, lists, quotes, line breaks and
links as ``text (url)``; it drops styles, scripts, images and layout noise.

The rendering module runs it once per *template* (on the HTML with its Liquid
tags hidden behind placeholders), not once per message, because the parser is
pure Python and costs about as much as rendering the whole message.
"""

import re
from html.parser import HTMLParser

# Elements whose content never reaches the text part.
_SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript", "svg"})
# Elements that start and end a paragraph (a blank line around them).
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                         "pre", "ul", "ol", "table", "dl", "figure", "address"})
# Elements that start and end a line.
_LINES = frozenset({"div", "tr", "li", "dt", "dd", "section", "article", "header",
                    "footer", "main", "nav", "aside", "center", "form", "caption"})
# Cells of a row stay on one line, a space apart.
_CELLS = frozenset({"td", "th"})
_UNDERLINES = {"h1": "=", "h2": "-"}
_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACES = re.compile(r"[ \t]+\n")


class _TextWriter(HTMLParser):
    """Collects text with pending line breaks, so blocks never stack blank lines."""

    def __init__(self, keep_comment=None):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.pending = 0  # newlines owed before the next text
        self.at_line_start = True
        self.skip_depth = 0
        self.pre_depth = 0
        self.quote_depth = 0
        self.lists = []  # one entry per open list: the next number, or None for bullets
        self.links = []  # (href, index in out where the link text starts)
        self.heading = None  # (tag, index in out) while inside h1/h2
        self.keep_comment = keep_comment

    # -- output helpers ---------------------------------------------------------------

    def _break(self, lines):
        if self.out:
            self.pending = max(self.pending, lines)

    def _write(self, text):
        if self.pending:
            self.out.append("\n" * self.pending)
            self.pending = 0
            self.at_line_start = True
        if self.at_line_start:
            if text.startswith(" ") and not self.pre_depth:
                text = text.lstrip(" ")
                if not text:
                    return
            self.out.append(self._line_prefix())
            self.at_line_start = False
        self.out.append(text)

    def _line_prefix(self):
        prefix = "> " * self.quote_depth
        if self.lists:
            prefix += "  " * (len(self.lists) - 1)
        return prefix

    # -- parser callbacks -------------------------------------------------------------

    def handle_starttag(self, tag, attrs):
        if tag in _SKIPPED:
            self.skip_depth += 1
        elif self.skip_depth:
            return
        elif tag in _PARAGRAPHS:
            self._open_paragraph(tag)
        elif tag in _LINES:
            self._break(1)
            if tag == "li":
                self._open_item()
        elif tag in _CELLS:
            if self.out and not self.at_line_start and not self.pending:
                self.out.append(" ")
        elif tag == "br":
            self._write("")
            self.out.append("\n")
            self.at_line_start = True
        elif tag == "hr":
            self._break(2)
            self._write("-" * 20)
            self._break(2)
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.out)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img", "meta", "link", "input"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in _SKIPPED:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif self.skip_depth:
            return
        elif tag in _PARAGRAPHS:
            self._close_paragraph(tag)
        elif tag in _LINES:
            self._break(1)
        elif tag == "a" and self.links:
            self._close_link(*self.links.pop())

    def handle_data(self, data):
        if self.skip_depth or not data:
            return
        if self.pre_depth:
            for i, line in enumerate(data.split("\n")):
                if i:
                    self.out.append("\n")
                    self.at_line_start = True
                if line:
                    self._write(line)
            return
        text = _WHITESPACE.sub(" ", data)
        if text == " " and (self.at_line_start or self.pending or not self.out):
            return
        if self.out and self.out[-1].endswith(" ") and text.startswith(" "):
            text = text[1:]
        if text:
            self._write(text)

    def handle_comment(self, data):
        # The renderer hides Liquid tags in comments; those must come through as text.
        if self.keep_comment and not self.skip_depth and self.keep_comment(data):
            self._write(data)

    # -- blocks -------------------------------------------------------------------

    def _open_paragraph(self, tag):
        self._break(1 if (tag in ("ul", "ol") and self.lists) else 2)
        if tag == "ul":
            self.lists.append(None)
        elif tag == "ol":
            self.lists.append(1)
        elif tag == "blockquote":
            self.quote_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        elif tag in _UNDERLINES:
            self.heading = (tag, len(self.out))

    def _close_paragraph(self, tag):
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in _UNDERLINES and self.heading and self.heading[0] == tag:
            self._underline(tag)
        self._break(1 if (tag in ("ul", "ol") and self.lists) else 2)

    def _underline(self, tag):
        title = "".join(self.out[self.heading[1]:]).strip()
        self.heading = None
        if title:
            self.out.append("\n")
            self.at_line_start = True
            self._write(_UNDERLINES[tag] * min(len(title), 72))

    def _open_item(self):
        if not self.lists:
            self._write("* ")
            return
        number = self.lists[-1]
        marker = "* " if number is None else f"{number}. "
        if number is not None:
            self.lists[-1] = number + 1
        self._write(marker)

    def _close_link(self, href, start):
        label = _WHITESPACE.sub(" ", "".join(self.out[start:])).strip()
        target = href.strip()
        if not target or target.startswith("#") or target.lower().startswith("javascript:"):
            return
        shown = target[7:] if target.lower().startswith("mailto:") else target
        if label in (target, shown):
            return
        if not label:
            self._write(target)
            return
        self.out.append(f" ({target})")


def html_to_text(html, *, keep_comment=None):
    """
    Return the plain-text version of `html`.

    `keep_comment(data) -> bool` picks HTML comments whose content is kept as
    text (the renderer's Liquid placeholders); every other comment is dropped.
    """
    writer = _TextWriter(keep_comment)
    writer.feed(html)
    writer.close()
    text = "".join(writer.out)
    text = _TRAILING_SPACES.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"
