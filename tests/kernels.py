"""A real ipykernel for tests that drive the panel the way a notebook does."""

import json
import textwrap

from jupyter_client.manager import start_new_kernel

# The panel's views, as reported by Kernel.panel_state.
VIEWS = ("order_view", "secret_view", "hexdump_view", "hexdump_table_view",
         "checks_view")


class Kernel:
    """A kernel in ``cwd`` with ``env``; ``run`` returns what code printed."""

    def __init__(self, cwd, env):
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", cwd=str(cwd), env=env)

    def run(self, code):
        """Run ``code``; fail with its output unless it ran cleanly."""
        out = []

        def keep(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"ERROR {msg['content']['ename']}: "
                           f"{msg['content']['evalue']}")

        reply = self.client.execute_interactive(
            textwrap.dedent(code), output_hook=keep, timeout=120)
        text = "".join(out)
        assert reply["content"]["status"] == "ok", text
        return text

    def panel_state(self, action=""):
        """Run ``action``, then return the state of the kernel's ``panel``.

        The state is ``panel.state()`` plus the order's and secret's hrefs
        and the HTML of every view.
        """
        text = self.run(f"""
            import json as _json
            {action}
            _state = panel.state()
            _state["order_ref"] = panel.order and panel.order.order_ref
            _state["secret_ref"] = panel.order and panel.order.secret_ref
            for _view in {VIEWS!r}:
                _state[_view] = getattr(panel, _view).value
            print("STATE" + _json.dumps(_state))
        """)
        return json.loads(text.split("STATE", 1)[1])

    def shutdown(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
