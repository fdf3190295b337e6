"""`make demo`: for now the headless core demo (scripts/core_demo.py)."""

from scripts.core_demo import main

if __name__ == "__main__":
    main()
