from livemon.cli import main

main()
