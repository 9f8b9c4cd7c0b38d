"""Notebook: wall time of a headless run of the exercise notebook.

The embedded server is already up; the kernel finds it through
``$BARBICAN_LAB_STATE``.  The notebook runs in a scratch folder, so the
key file it saves lands there.  The reference is a one-cell notebook run
the same way: what starting and stopping a kernel costs by itself.
"""

import logging
import shutil
import subprocess
import tempfile
import time

from bench.figures import Figure, median
from bench.servers import ROOT, child_env

LOG = logging.getLogger(__name__)

SECTION = "6 notebook"
NOTEBOOK = ROOT / "notebooks" / "01-order-an-aes-key.ipynb"
CELL_TIMEOUT = 120
NAME = "exercise notebook, headless, median of {} (s)"


def _run(path, state_dir):
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="bench-notebook-") as scratch:
        started = time.perf_counter()
        nbclient.NotebookClient(
            notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
            resources={"metadata": {"path": scratch}},
        ).execute(env=child_env(state_dir), stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
        return time.perf_counter() - started


def _empty_notebook(folder):
    import nbformat

    path = folder / "empty.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("pass"))
    nbformat.write(notebook, path)
    return path


def measure(state_dir, runs, workdir):
    """Run the exercise notebook and the empty one ``runs`` times each.

    :returns: a list with one :class:`Figure`; its value is ``None`` with
        the note "notebook not found" when the notebook is missing.
    """
    if not NOTEBOOK.exists():
        LOG.warning("%s not found", NOTEBOOK)
        return [Figure(SECTION, NAME.format(runs), None, None, "",
                       note="notebook not found")]
    folder = workdir / "notebooks"
    folder.mkdir(exist_ok=True)
    copy = folder / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    empty = _empty_notebook(folder)
    ours, ref = [], []
    for _ in range(runs):
        ours.append(_run(copy, state_dir))
        ref.append(_run(empty, state_dir))
    return [Figure(SECTION, NAME.format(runs), median(ours), median(ref),
                   "one-cell notebook", digits=1,
                   extra={"ours": ours, "ref": ref})]
