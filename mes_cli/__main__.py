"""`python -m mes_cli` runs the `mes` command."""

from mes_cli.main import main

main()
