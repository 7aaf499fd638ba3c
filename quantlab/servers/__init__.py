"""Server processes quantlab starts (vLLM lanes, the local llama.cpp pair): one way to
spawn, watch, health-check and stop them (``process``), one sequential/parallel start with
progress (``supervisor``), and one place that turns SIGTERM/SIGHUP into a clean stop
(``signals``). What differs between kinds of server (their command lines) is in
``quantlab.backends``.
"""

from quantlab.servers.process import ServerProcess, ServerStartError, stop_all
from quantlab.servers.signals import StopSignals, install_exit_handlers, stop_signals
from quantlab.servers.supervisor import Supervisor

__all__ = [
    "ServerProcess",
    "ServerStartError",
    "StopSignals",
    "Supervisor",
    "install_exit_handlers",
    "stop_all",
    "stop_signals",
]
