"""Old path of ``python -m viewdiff.training.extract`` (kept so existing commands keep working)."""
from viewdiff.training.extract import main

if __name__ == "__main__":
    raise SystemExit(main())
