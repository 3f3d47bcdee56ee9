"""``python -m den.node``: start the node daemon."""

from den.node.server import main

if __name__ == "__main__":
    main()
