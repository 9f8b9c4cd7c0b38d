"""hexdump() against the real util-linux ``hexdump -C``."""

import random
import shutil
import subprocess

import pytest

from helpers.hexdump import hexdump, hexdump_rows

from conftest import require

HEXDUMP = shutil.which("hexdump")


def system_hexdump(data):
    require(HEXDUMP, "util-linux hexdump", "apt-get install bsdextrautils")
    return subprocess.run([HEXDUMP, "-C"], input=data, check=True,
                          capture_output=True).stdout.decode()


EDGE_CASES = {
    "empty": b"",
    "1 byte": b"\x00",
    "15 bytes": bytes(range(15)),
    "16 bytes": bytes(range(16)),
    "17 bytes": bytes(range(17)),
    "31 bytes": bytes(range(31)),
    "32 bytes": bytes(range(32)),
    "33 bytes": bytes(range(33)),
    "all 256 values": bytes(range(256)),
    "identical rows": b"A" * 16 + bytes(64) + b"B" * 5,
    "identical rows at the end": b"A" * 16 + bytes(48),
    "squeeze then partial": bytes(48) + bytes(7),
    "printable edges": bytes([0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff]),
}


@pytest.mark.parametrize("data", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_hexdump_matches_util_linux(data):
    assert hexdump(data) == system_hexdump(data)


def test_hexdump_matches_util_linux_on_random_inputs():
    rnd = random.Random(20261204)
    for _ in range(200):
        alphabet = rnd.choice([b"\x00", b"\x00A", bytes(range(256))])
        data = bytes(rnd.choice(alphabet)
                     for _ in range(rnd.randint(0, 80)))
        assert hexdump(data) == system_hexdump(data), data


def test_32_byte_key_is_two_rows_and_the_final_offset():
    lines = hexdump(bytes(range(1, 33))).splitlines()
    assert [line[:8] for line in lines] == ["00000000", "00000010",
                                           "00000020"]
    assert lines[0].endswith("|................|")


def test_rows_keep_every_row_for_tables():
    rows = hexdump_rows(bytes(40))
    assert [r[0] for r in rows] == ["00000000", "00000010", "00000020"]
    assert rows[2][1] == "00 00 00 00 00 00 00 00"
    assert rows[2][2] == "........"


def test_hexdump_in_chunks_equals_hexdump_of_the_whole():
    from helpers.hexdump import iter_hexdump
    rnd = random.Random(7)
    for _ in range(200):
        data = bytes(rnd.choice(b"\x00\x00A") for _ in range(
            rnd.randint(0, 120)))
        cuts = sorted(rnd.randint(0, len(data)) for _ in range(4))
        chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert "".join(iter_hexdump(chunks)) == hexdump(data)
