from probebench.cli import main

main()
