from maillage.cli.main import main

main()
