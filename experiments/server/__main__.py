"""``python -m experiments.server start|status|stop``: see ``experiments.server.service``."""

from experiments.server.service import main

main()
