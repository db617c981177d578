from impromptu.cli import main

main()
