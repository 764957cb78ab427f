"""`python -m client`: see `client._cli`."""

from ._cli import main

if __name__ == "__main__":
    main()
