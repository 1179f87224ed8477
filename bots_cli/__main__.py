from bots_cli.cli import main

main()
