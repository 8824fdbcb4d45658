"""RowReader's quick check against its full one (lists.importing_csv): the same answer for every row it takes."""

import pytest
from hypothesis import given, settings, strategies as st

from lists.importing_csv import RowReader, Sniffed, auto_mapping

# Cells of ordinary pieces (case, dots, spaces at the ends, non-ASCII letters, time zones, long runs), some
# with one piece the checks look for in the middle (tab, backslash, control character, undecodable byte,
# Unicode space, quote, @, unknown time zone, a value too long).
ORDINARY = ["ada", "Ada", "LOVELACE", ".", "-", "+", "_", " ", "é", "UTC", "Europe/Paris", "x" * 120, "'", ""]
SPECIAL = ["\t", "\\", "\n", "\x07", "\x1f", "\udcfc", "\u00a0", "\u2003", "@", '"', "Mars/Olympus",
           "x" * 700, "x" * 1001]
ordinary = st.lists(st.sampled_from(ORDINARY), max_size=4).map("".join)
addresses = st.builds(lambda local, host, tld: f"{local}@{host}.{tld}", st.sampled_from(["ada", "A.B", "x+y", ""]),
                      st.sampled_from(["example", "EXAMPLE", "b-c", "-bad"]), st.sampled_from(["org", "ORG", "c"]))

HEADERS = {
    "two names, two attributes": ["email", "first name", "last name", "time zone", "plan", "note"],
    "one name, one attribute": ["email", "name", "plan"],
    "address only": ["email"],
}


def reader(header):
    return RowReader("unused.csv", Sniffed("utf-8", ",", header, []), auto_mapping(header))


@pytest.mark.parametrize("header", HEADERS.values(), ids=HEADERS.keys())
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_quick_check_answers_as_the_full_check_does(header, data):
    rows = reader(header)
    width = data.draw(st.sampled_from([len(header)] * 4 + [len(header) - 1, len(header) + 1]))
    row = data.draw(st.lists(ordinary, min_size=width, max_size=width))
    if row and data.draw(st.integers(0, 3)):
        row[0] = data.draw(addresses)
    if "time zone" in header[:width]:
        row[header.index("time zone")] = data.draw(st.sampled_from(["", "UTC", " Europe/Paris", "Mars/Olympus"]))
    if row and data.draw(st.booleans()):  # one special piece in one cell
        n, special = data.draw(st.integers(0, width - 1)), data.draw(st.sampled_from(SPECIAL))
        at = data.draw(st.integers(0, len(row[n])))
        row[n] = row[n][:at] + special + row[n][at:]

    quick = rows._quick_check()(7, row)

    assert quick is None or quick == (7, *rows.check(row))


def test_the_quick_check_answers_as_the_full_check_does_for_each_special_piece_in_each_cell():
    rows = reader(HEADERS["two names, two attributes"])
    quick = rows._quick_check()
    base = ["ada@example.org", "Ada", "Lovelace", "UTC", "pro", "note"]
    for n, cell in enumerate(base):
        for special in [*SPECIAL, "\x7f", "\x00", "\udc80", " " * 3, "X" * 200]:
            for changed in (special + cell, cell[:2] + special + cell[2:], cell + special):
                row = [*base[:n], changed, *base[n + 1:]]
                answer = quick(7, row)
                assert answer is None or answer == (7, *rows.check(row)), row


def test_a_common_row_takes_the_quick_check():
    rows = reader(HEADERS["two names, two attributes"])
    row = [" Ada.Lovelace@EXAMPLE.org ", "Ada", " Lovelace", "Europe/Paris", "pro ", ""]

    assert rows._quick_check()(7, row) == (7, "Ada.Lovelace@example.org", "Ada Lovelace", "Europe/Paris", ("pro", ""))
    assert rows.check(row) == ("Ada.Lovelace@example.org", "Ada Lovelace", "Europe/Paris", ("pro", ""))
