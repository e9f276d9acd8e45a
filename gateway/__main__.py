"""`python -m gateway` runs the `ocpp-gateway` command line."""

from .cli import main

main()
