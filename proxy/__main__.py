"""`python -m proxy`: the command line (`proxy/cli/`)."""

from proxy.cli.main import main

if __name__ == "__main__":
    main()
