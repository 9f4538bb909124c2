"""Messages for visitors carry no server paths and no image-library wording."""
from __future__ import annotations

from viewdiff.demo.messages import display_path, user_message
from viewdiff.paths import REPO_ROOT


def test_server_paths_and_library_details_are_removed():
    temp = "/tmp/gradio/0a1b2c/empty.jpg"
    assert user_message(f"the image file {temp} is empty (0 bytes): use a JPEG or PNG photo", temp) == \
        "The image file empty.jpg is empty (0 bytes): use a JPEG or PNG photo"
    assert user_message("the JPEG file is truncated or corrupt (image file is truncated (85 bytes not processed)): "
                        "use another copy of the photo") == \
        "The JPEG file is truncated or corrupt: use another copy of the photo"
    assert user_message("the image data is corrupt (SyntaxError: not a JPEG file: starts with 0x74): use another "
                        "JPEG or PNG photo") == "The image data is corrupt: use another JPEG or PNG photo"
    assert user_message("cannot read /srv/app/uploads/x/photo.png") == "Cannot read photo.png"


def test_display_path_is_relative():
    assert display_path(REPO_ROOT / "weights" / "dlib" / "enhanced") == "weights/dlib/enhanced"
    assert display_path(REPO_ROOT.parent / "shared" / "models" / "scrfd" / "det.onnx") == "../shared/models/scrfd/det.onnx"
    assert display_path("/opt/elsewhere/models/file.dat") == "models/file.dat"


def test_markdown_text_shows_names_literally():
    from viewdiff.demo.messages import markdown_text
    text = markdown_text('<a href="x">click me</a> **bold** [link](http://x) _i_')
    assert "<a" not in text and "&lt;a" in text
    assert "\\*\\*bold\\*\\*" in text and "\\[link\\](http://x)" in text and "\\_i\\_" in text
