from emocompose.cli import main

main()
