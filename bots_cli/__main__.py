from bots_cli.cli.app import main

main()
