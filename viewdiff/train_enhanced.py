"""Old path of ``python -m viewdiff.training.train`` (kept so existing commands, also ``python viewdiff/train_enhanced.py``, keep working)."""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python viewdiff/train_enhanced.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewdiff.training.train import main  # noqa: E402

if __name__ == "__main__":
    main()
