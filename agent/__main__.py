"""``python -m agent start|dev|connect ...``: this repository's deployable avatar-relay worker.

It is the installed ``avatar-relay`` console script, run from a checkout.
"""

from avatar_relay.cli import main

if __name__ == "__main__":
    main()
