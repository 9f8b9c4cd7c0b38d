"""The command line: the exercise's openstack CLI commands verbatim, and
``python -m helpers check`` and ``hexdump``."""

import shutil
import stat
import subprocess
import sys

import helpers

from conftest import require

CREATE = ('openstack secret order create key --name "Order for an AES key" '
          '--algorithm aes --bit-length 256 -c "Order href" -f value')
GET = "openstack secret order get $ORDER_REF"
FETCH = ("openstack secret get --file ordered_key --payload_content_type "
         "'application/octet-stream' $SECRET_REF")


def shell(command, env, cwd):
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_openstack_cli_commands_verbatim(server, conn, cli_env, tmp_path,
                                         cleanup):
    require(shutil.which("openstack", path=cli_env["PATH"]),
            "the openstack CLI", "pip install -r requirements.txt")
    env = dict(cli_env, **server.cli_environment)
    created = shell(CREATE, env, tmp_path)
    assert created.returncode == 0, created.stderr
    order_ref = created.stdout.strip()
    cleanup.append(order_ref)
    assert order_ref.startswith(f"{server.endpoint}/v1/orders/")

    env["ORDER_REF"] = order_ref
    shown = shell(GET, env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "| Status         | ACTIVE" in shown.stdout
    secret_ref = helpers.get_order(conn, order_ref).secret_ref
    cleanup.append(secret_ref)
    assert secret_ref in shown.stdout

    env["SECRET_REF"] = secret_ref
    fetched = shell(FETCH, env, tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    key_file = (tmp_path / "ordered_key").read_bytes()
    assert len(key_file) == 32
    assert key_file == helpers.fetch_key(conn, order_ref)


def test_check_runs_the_whole_exercise(server, cli_env, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "check", "--file", "ordered_key"],
        env=cli_env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"embedded Barbican {server.version} at {server.endpoint}" in out
    assert "Status" in out and "ACTIVE" in out
    assert f"Secret href: {server.endpoint}/v1/secrets/" in out
    lines = out.strip().splitlines()
    assert lines.pop() == ("Deleted this check's order and secret (--keep "
                           "keeps them).")
    assert lines[-1] == "00000020"
    assert lines[-3].startswith("00000000  ") and lines[-2].startswith(
        "00000010  ")
    key = (tmp_path / "ordered_key").read_bytes()
    assert len(key) == 32
    assert stat.S_IMODE((tmp_path / "ordered_key").stat().st_mode) == 0o600
    assert "\n".join(lines[-3:]) + "\n" == helpers.hexdump(key)


def test_check_failure_is_one_line_and_nonzero(server, cli_env, tmp_path):
    for args, words in [(["--bit-length", "100"], "not supported"),
                        (["--algorithm", "rot13"], "ended in ERROR")]:
        result = subprocess.run(
            [sys.executable, "-m", "helpers", "check", *args], env=cli_env,
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith("error:")]
        assert len(errors) == 1 and words in errors[0]
        assert "Traceback" not in result.stderr


def test_hexdump_command_prints_what_hexdump_prints(cli_env, tmp_path):
    data = bytes(range(40)) + bytes(40)
    (tmp_path / "ordered_key").write_bytes(data)
    ours = subprocess.run(
        [sys.executable, "-m", "helpers", "hexdump", "ordered_key"],
        env=cli_env, cwd=tmp_path, capture_output=True, timeout=60)
    assert ours.returncode == 0
    assert ours.stdout.decode() == helpers.hexdump(data)
    missing = subprocess.run(
        [sys.executable, "-m", "helpers", "hexdump", "nope"], env=cli_env,
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert missing.stderr == ("error: Cannot read nope: No such file or "
                              "directory. Check the file name; the exercise "
                              "saves the key as ordered_key.\n")


def run_helpers(*args, env, cwd):
    return subprocess.run([sys.executable, "-m", "helpers", *args], env=env,
                          cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_check_takes_away_what_it_made_unless_kept(server, conn, cli_env,
                                                   tmp_path, cleanup):
    def order_refs(out):
        return [line.split(": ", 1)[1] for line in out.splitlines()
                if line.startswith("Order href: ")]

    removed = run_helpers("check", env=cli_env, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "Deleted this check's order and secret" in removed.stdout
    import pytest
    with pytest.raises(helpers.NotFound):
        helpers.get_order(conn, order_refs(removed.stdout)[0])

    kept = run_helpers("check", "--keep", env=cli_env, cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    ref = order_refs(kept.stdout)[0]
    cleanup.append(ref)
    assert helpers.get_order(conn, ref).status == "ACTIVE"
    cleanup.append(helpers.get_order(conn, ref).secret_ref)


def test_check_refuses_a_timeout_that_is_no_duration(cli_env, tmp_path):
    for value in ("nan", "inf", "-5", "0", "soon"):
        result = run_helpers("check", "--timeout", value, env=cli_env,
                             cwd=tmp_path)
        assert result.returncode == 2
        assert "not a number of seconds greater than 0" in result.stderr


def test_state_dir_may_follow_the_subcommand(server, cli_env, tmp_path):
    env = {k: v for k, v in cli_env.items() if k != "BARBICAN_LAB_STATE"}
    result = run_helpers("server", "status", "--state-dir",
                         str(server.state_dir), env=env, cwd=tmp_path)
    assert result.returncode == 0
    assert server.endpoint in result.stdout


def test_hexdump_command_streams_a_large_file(cli_env, tmp_path):
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit
    (tmp_path / "big").write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "hexdump", "big"], env=cli_env,
        cwd=tmp_path, capture_output=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.decode() == helpers.hexdump(data)


def test_check_takes_away_its_order_when_it_fails(conn, cli_env, tmp_path):
    import pytest
    result = run_helpers("check", "--algorithm", "rot13", env=cli_env,
                         cwd=tmp_path)
    assert result.returncode == 1
    assert "Barbican's error code 400: Process TypeOrder issue seen - " \
           "Secret generate supported plugin not found)." in result.stderr
    (ref,) = [line.split(": ", 1)[1] for line in result.stdout.splitlines()
              if line.startswith("Order href: ")]
    with pytest.raises(helpers.NotFound):
        helpers.get_order(conn, ref)


def test_check_names_its_own_flag_for_an_existing_file(cli_env, tmp_path):
    (tmp_path / "ordered_key").write_bytes(b"an older key")
    result = run_helpers("check", "--file", "ordered_key", env=cli_env,
                         cwd=tmp_path)
    assert result.returncode == 1
    assert "Add --overwrite to replace it" in result.stderr
    assert (tmp_path / "ordered_key").read_bytes() == b"an older key"
