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


def iter_hexdump(chunks):
    """Yield ``hexdump -C``'s lines for bytes that arrive in chunks.

    Memory stays small whatever the total: a file is read piece by piece.

    :param chunks: an iterable of bytes objects of any sizes.
    """
    offset = 0
    previous = None
    squeezed = False
    pending = b""
    for chunk in chunks:
        pending += chunk
        usable = len(pending) - len(pending) % ROW
        for start in range(0, usable, ROW):
            row = pending[start:start + ROW]
            # hexdump squeezes only full rows that repeat the row before.
            if row == previous:
                if not squeezed:
                    squeezed = True
                    yield "*\n"
            else:
                previous = row
                squeezed = False
                yield (f"{offset:08x}  {_hex_column(row)} "
                       f"|{_ascii_column(row)}|\n")
            offset += ROW
        pending = pending[usable:]
    if pending:
        yield (f"{offset:08x}  {_hex_column(pending)} "
               f"|{_ascii_column(pending)}|\n")
        offset += len(pending)
    if offset:
        yield f"{offset:08x}\n"


def hexdump(data):
    """Return exactly what ``hexdump -C`` prints for ``data``.

    Introduced in ``notebooks/01-order-an-aes-key.ipynb``.

    :param data: the bytes to show (a key is 16, 24 or 32 of them).
    :returns: the text, each line ending in a newline; empty for no bytes.
    """
    return "".join(iter_hexdump([bytes(data)]))
