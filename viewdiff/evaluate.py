"""Old path of ``python -m viewdiff.training.evaluate`` (kept so existing commands keep working)."""
from viewdiff.training.evaluate import main

if __name__ == "__main__":
    main()
