from weprompt_cli.cli import main

main()
