from atzoo.cli.main import main

main()
