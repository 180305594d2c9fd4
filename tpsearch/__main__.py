from tpsearch.cli import main

main()
