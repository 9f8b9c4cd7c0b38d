"""Memory and import cost: the server after the load, a learner's kernel.

RSS figures come from /proc (``VmHWM`` is a process's peak RSS).  For
uWSGI the master's and the worker's figures are added up.
"""

import logging
import subprocess
import sys

from bench.figures import Figure, median
from bench.servers import ROOT, child_env, memory_kib

LOG = logging.getLogger(__name__)

SECTION = "5 memory"
SERVER_TARGET_MB = 130
KERNEL_TIMEOUT = 120


def megabytes(kib):
    return kib / 1024


def server_peak(server):
    """Peak and current RSS of a server's processes, in MB."""
    pids = server.pids()
    return (megabytes(sum(memory_kib(p, "VmHWM") for p in pids)),
            megabytes(sum(memory_kib(p, "VmRSS") for p in pids)))


def server_figures(ours, ref):
    """Rows for two ``server_peak`` results, measured after the load."""
    return [
        Figure(SECTION, "server peak RSS after the load (MB)", ours[0],
               ref[0], "uWSGI", f"<= {SERVER_TARGET_MB} MB",
               ours[0] <= SERVER_TARGET_MB, digits=0),
        Figure(SECTION, "server RSS after the load (MB)", ours[1], ref[1],
               "uWSGI", digits=0),
    ]


def _kernel_rss(state_dir):
    """RSS of a fresh kernel before and after ``import helpers``, in MB."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(
        kernel_name="python3", env=child_env(state_dir),
        startup_timeout=KERNEL_TIMEOUT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        pid = manager.provisioner.process.pid
        before = megabytes(memory_kib(pid, "VmRSS"))
        reply = client.execute_interactive(IMPORT_HELPERS,
                                           timeout=KERNEL_TIMEOUT)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("import helpers failed in the kernel: "
                               f"{reply['content'].get('evalue')}")
        after = megabytes(memory_kib(pid, "VmRSS"))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return before, after


# helpers loads its modules when first used: time what the notebook's
# first cells use, not the bare package.
IMPORT_HELPERS = ("import helpers\n"
                  "_ = (helpers.connect, helpers.order_key, "
                  "helpers.order_table)")


def _import_seconds(module, state_dir):
    statement = IMPORT_HELPERS if module == "helpers" else f"import {module}"
    code = ("import time\ns = time.perf_counter()\n" + statement +
            "\nprint(time.perf_counter() - s)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         env=child_env(state_dir), capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return float(out.strip())


def kernel_figures(state_dir, imports):
    """Rows for a kernel's RSS and for the helpers' import time.

    :param imports: how many fresh interpreters time each import.
    """
    before, after = _kernel_rss(state_dir)
    ours, ref = [], []
    for _ in range(imports):
        ours.append(_import_seconds("helpers", state_dir))
        ref.append(_import_seconds("openstack", state_dir))
    return [
        Figure(SECTION, "kernel RSS after import helpers + use (MB)", after,
               before, "same kernel before", digits=0),
        Figure(SECTION, f"import helpers + use, fresh python, median of "
               f"{imports} (s)", median(ours), median(ref), "import openstack",
               digits=2, extra={"ours": ours, "ref": ref}),
    ]
