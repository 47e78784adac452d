"""The action server must run with rasa_sdk alone: importing our actions never imports rasa."""

import subprocess
import sys


def test_actions_do_not_import_rasa():
    code = (
        "import sys, actions.actions, assistant.runtime, actions.observability\n"
        "import rasa_sdk.plugin\n"
        "assert rasa_sdk.plugin.plugin_manager().get_plugins()  # our /ready and /metrics\n"
        "leaked = sorted(m for m in sys.modules if m == 'rasa' or m.startswith('rasa.'))\n"
        "assert not leaked, leaked\n"
        "assert 'rasa_sdk' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
