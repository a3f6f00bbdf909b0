from l2compile.cli import main

main()
