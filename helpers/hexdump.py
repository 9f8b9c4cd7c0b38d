"""Bytes shown the way ``hexdump -C`` shows them.

The lesson asks learners to compare the notebook's view of their key with
``hexdump -C ordered_key`` in a terminal, so :func:`hexdump` reproduces the
util-linux output byte for byte: 16 bytes a row, a ``*`` line in place of
rows that repeat the row before them, and the total length as the last line.
"""

ROW = 16


def _hex_column(row):
    cells = [f"{b:02x} " for b in row] + ["   "] * (ROW - len(row))
    return "".join(cells[:8]) + " " + "".join(cells[8:])


def _ascii_column(row):
    return "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in row)


def hexdump_rows(data):
    """Split bytes into rows of 16 with their offset, as hexdump does.

    :param data: the bytes to show.
    :returns: a list of ``(offset, hex, ascii)`` tuples, one per row, with
        nothing squeezed: a table wants every byte.
    """
    data = bytes(data)
    return [
        (f"{offset:08x}", _hex_column(data[offset:offset + ROW]).rstrip(),
         _ascii_column(data[offset:offset + ROW]))
        for offset in range(0, len(data), ROW)
    ]


def hexdump(data):
    """Return exactly what ``hexdump -C`` prints for ``data``.

    Introduced in ``notebooks/01-order-an-aes-key.ipynb``.

    :param data: the bytes to show (a key is 16, 24 or 32 of them).
    :returns: the text, each line ending in a newline; empty for no bytes.
    """
    data = bytes(data)
    if not data:
        return ""
    lines = []
    previous = None
    squeezed = False
    for offset in range(0, len(data), ROW):
        row = data[offset:offset + ROW]
        # hexdump squeezes only full rows that repeat the row before them.
        if row == previous and len(row) == ROW:
            if not squeezed:
                lines.append("*\n")
                squeezed = True
            continue
        previous = row
        squeezed = False
        lines.append(f"{offset:08x}  {_hex_column(row)} "
                     f"|{_ascii_column(row)}|\n")
    lines.append(f"{len(data):08x}\n")
    return "".join(lines)
