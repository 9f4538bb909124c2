"""Plot builders return valid plotly figures holding the right data."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from viewdiff.demo import plots as demo_plots
from viewdiff.demo.calibration import Threshold


def figure(spec: demo_plots.PlotSpec) -> go.Figure:
    """The spec as gr.Plot sends it (JSON), validated by plotly (unknown properties raise)."""
    assert isinstance(spec, demo_plots.PlotSpec)
    json.loads(spec.to_json())  # strict JSON: no NaN, everything serialisable
    return spec.to_figure()


def test_annotate_faces_draws_box_and_keypoints_on_a_copy():
    image = np.zeros((100, 120), np.uint8)  # grayscale in, RGB out
    out = demo_plots.annotate_faces(image, [[10, 20, 60, 80]], [[[20, 40], [50, 40], [35, 55], [25, 70], [45, 70]]])
    assert out.shape == (100, 120, 3) and image.max() == 0
    assert tuple(out[20, 35]) == (40, 220, 40)  # top edge of the box, green
    assert out[55, 35].any() and not out[5, 5].any()  # nose keypoint drawn, background untouched


def test_attention_figure_labels_every_token():
    attention = np.random.default_rng(0).random((4, 4))
    fig = figure(demo_plots.attention_figure(attention, ["pose", "e0", "e1", "3D"], "layer 1, head 1"))
    heatmap = fig.data[0]
    assert isinstance(heatmap, go.Heatmap)
    np.testing.assert_allclose(np.asarray(heatmap.z), attention, rtol=1e-4)
    assert list(heatmap.x) == ["pose", "e0", "e1", "3D"] == list(heatmap.y)  # readable: the names themselves
    assert fig.layout.title.text == "layer 1, head 1" and fig.layout.xaxis.dtick == 1
    # repeated names get their index, so plotly keeps one column per token
    assert demo_plots.token_names(["e", "e", "3D"]) == ["0:e", "1:e", "2:3D"]


@pytest.mark.parametrize("axis, expected", [("z", lambda v: v[2]), ("y", lambda v: v[:, 2]), ("x", lambda v: v[:, :, 2])])
def test_voxel_slice_follows_zyx_indexing(axis, expected):
    volume = np.arange(4 ** 3, dtype=np.float32).reshape(4, 4, 4)
    np.testing.assert_array_equal(demo_plots.voxel_slice(volume, axis, 2), expected(volume))
    fig = figure(demo_plots.voxel_slice_figure(volume, axis, 2, "density"))
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), expected(volume))
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0, 63)  # colour range of the whole volume
    assert f"slice {axis} = 2 of 3" in fig.layout.title.text


def test_voxel_slice_figure_marks_the_keypoints():
    volume = np.zeros((8, 8, 8), np.float32)
    keypoints = np.array([[1, 2, 3], [6, 2, 3], [3.5, 4, 1], [2, 6, 3], [5, 6, 3]], np.float32)  # x, y, z
    names = ["left eye", "right eye", "nose", "left mouth", "right mouth"]
    for axis, (cols, rows) in {"z": (0, 1), "y": (0, 2), "x": (1, 2)}.items():
        eyes, nose, mouth = figure(demo_plots.voxel_slice_figure(volume, axis, 3, "density", keypoints, names)).data[1:]
        np.testing.assert_allclose(np.concatenate([eyes.x, nose.x, mouth.x]), keypoints[:, cols])
        np.testing.assert_allclose(np.concatenate([eyes.y, nose.y, mouth.y]), keypoints[:, rows])
        assert [eyes.name, nose.name, mouth.name] == ["eyes", "nose", "mouth corners"]   # in the legend
        assert list(eyes.text) + list(nose.text) + list(mouth.text) == names   # on hover
        # no labels printed on the slice: at a target yaw of +-90 the five fall in one column and ran together
        assert all(trace.mode == "markers" for trace in (eyes, nose, mouth))
    iso = figure(demo_plots.voxel_volume_figure(volume + np.arange(8)[:, None, None], "density", keypoints, names))
    assert isinstance(iso.data[1], go.Scatter3d) and len(iso.data[1].x) == 5


def test_voxel_figures_draw_the_measured_surface_under_the_keypoints():
    """The face mesh's 468 vertices (voxel units): a light point cloud projected onto the slice, drawn before the
    keypoints' marks (under them); in 3D its triangles. "unsure" in the legend only when asked."""
    from viewdiff.faces.face_mesh import triangles
    volume = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    surface = np.random.default_rng(1).uniform(1, 6, (468, 3)).astype(np.float32)
    keypoints = surface[:5]
    names = ["left eye", "right eye", "nose", "left mouth", "right mouth"]
    for axis, (cols, rows) in {"z": (0, 1), "y": (0, 2), "x": (1, 2)}.items():
        fig = figure(demo_plots.voxel_slice_figure(volume, axis, 3, "density", keypoints, names, surface))
        cloud = fig.data[1]
        assert cloud.name == "face surface" and cloud.mode == "markers" and len(cloud.x) == 468
        np.testing.assert_allclose(cloud.x, surface[:, cols], rtol=1e-4)
        np.testing.assert_allclose(cloud.y, surface[:, rows], rtol=1e-4)
        assert [t.name for t in fig.data[2:]] == ["eyes", "nose", "mouth corners"]
    unsure = figure(demo_plots.voxel_slice_figure(volume, "z", 3, "density", keypoints, names, surface, True))
    assert unsure.data[1].name == "face surface (unsure)"
    fig = figure(demo_plots.voxel_volume_figure(volume, "density", keypoints, names, surface))
    mesh = [t for t in fig.data if isinstance(t, go.Mesh3d)]
    assert len(mesh) == 1 and len(mesh[0].x) == 468 and len(mesh[0].i) == len(triangles())
    assert len(demo_plots.voxel_slice_figure(volume, "z", 3, "density", keypoints, names, surface).to_json()) < 30_000


def test_voxel_slice_figure_clips_the_index():
    volume = np.ones((4, 4, 4), np.float32)
    assert "slice z = 3 of 3" in demo_plots.voxel_slice_figure(volume, "z", 99, "density").layout["title"]["text"]


def test_voxel_volume_figure_is_an_isosurface_of_all_voxels():
    volume = np.random.default_rng(0).random((5, 5, 5)).astype(np.float32)
    trace = figure(demo_plots.voxel_volume_figure(volume, "channel norm")).data[0]
    assert isinstance(trace, go.Isosurface) and len(trace.value) == 125
    assert trace.value[1 * 25 + 2 * 5 + 3] == pytest.approx(volume[1, 2, 3], rel=1e-4)  # z=1, y=2, x=3
    assert (trace.z[1 * 25 + 2 * 5 + 3], trace.y[1 * 25 + 2 * 5 + 3], trace.x[1 * 25 + 2 * 5 + 3]) == (1, 2, 3)


def test_similarity_figure_sorted_by_transformed_best_highlighted_rank_change():
    fig = figure(demo_plots.similarity_figure(["a", "b", "c"], np.array([0.5, 0.2, 0.1]), np.array([0.4, 0.9, 0.3])))
    raw, transformed = fig.data
    assert list(transformed.y) == [0, 1, 2] == list(raw.y)   # rows, named by the tick labels
    assert list(fig.layout.yaxis.ticktext) == ["b ▲1", "a ▼1", "c"]  # rank raw -> transformed
    np.testing.assert_allclose(transformed.x, [0.9, 0.4, 0.3], rtol=1e-4)
    np.testing.assert_allclose(raw.x, [0.2, 0.5, 0.1], rtol=1e-4)
    assert not fig.layout.shapes  # no threshold: no row is shaded as a match
    assert fig.layout.title.text.startswith("Closest: b (0.900); no same-person threshold")
    assert tuple(fig.layout.xaxis.range) == (-0.02, 1.0)  # one fixed scale for both bars


def test_similarity_figure_threshold_match_and_not_in_gallery():
    threshold = Threshold(0.5, "CFP-FP")
    match = figure(demo_plots.similarity_figure(["a", "b"], np.array([0.3, 0.2]), np.array([0.6, 0.1]), threshold))
    assert match.layout.title.text == "Match: a (0.600 ≥ 0.50)"
    assert [s.type for s in match.layout.shapes] == ["rect", "line"] and match.layout.shapes[1].x0 == 0.5
    band = match.layout.shapes[0]  # the match's row (category 0 after sorting) is shaded
    assert (band.y0, band.y1, band.line.color) == (-0.5, 0.5, demo_plots.SAME_PERSON)   # a match is green
    assert not match.layout.annotations and "same person ≥ 0.50" in match.layout.xaxis.title.text   # not on a bar
    miss = figure(demo_plots.similarity_figure(["a", "b"], np.array([0.3, -0.4]), np.array([0.45, 0.1]), threshold))
    assert miss.layout.title.text.startswith("Not in the gallery: best score 0.450 (a) is below 0.50")
    assert [s.type for s in miss.layout.shapes] == ["line"]  # no best-match band below the threshold
    assert miss.layout.xaxis.range[0] == pytest.approx(-0.52)


def test_similarity_figure_raw_only():
    fig = figure(demo_plots.similarity_figure(["a", "b"], np.array([0.2, 0.7]), None))
    assert len(fig.data) == 1 and list(fig.layout.yaxis.ticktext) == ["b", "a"]
    assert not fig.layout.shapes
    assert "Closest: b (0.700)" in fig.layout.title.text


def test_similarity_figure_empty_gallery():
    fig = figure(demo_plots.similarity_figure([], np.zeros(0), np.zeros(0)))
    assert "gallery is empty" in fig.layout.title.text and not fig.layout.shapes


@pytest.mark.parametrize("target_yaw", [-90, 0, 90])
def test_pose_sweep_figure(target_yaw):
    yaws = np.arange(-90, 91, 10)
    sims = np.linspace(0.97, 0.99, len(yaws))  # a self-match: the axis must not zoom in on it
    fig = figure(demo_plots.pose_sweep_figure(yaws, sims, 0.42, "Tom Hanks", target_yaw, Threshold(0.6, "x")))
    np.testing.assert_allclose(fig.data[0].x, yaws)
    np.testing.assert_allclose(fig.data[0].y, sims, rtol=1e-4)
    assert [s.type for s in fig.layout.shapes] == ["line"] and fig.layout.shapes[0].x0 == target_yaw   # the marker
    raw, same = fig.data[1], fig.data[2]   # the references: lines named in the legend, never labels on the plot
    assert raw.name == "photo as it is 0.420" and np.allclose(raw.y, 0.42)
    assert same.name == "same person ≥ 0.60" and np.allclose(same.y, 0.6)
    assert tuple(fig.layout.yaxis.range) == (0.0, 1.0) and "Tom Hanks" in fig.layout.title.text
    (yaw_note,) = fig.layout.annotations   # the marker's label only, on the side away from the edge
    assert yaw_note.xanchor == ("right" if target_yaw > 0 else "left")
    assert fig.layout.meta == {"target_marker": True}   # the page draws its marker (a message figure has none)
    assert not demo_plots.message_figure("x", "your gallery is empty").layout.get("meta")


def test_message_figure_shows_the_text():
    fig = figure(demo_plots.message_figure("Attention map", "not loaded"))
    assert fig.layout.annotations[0].text == "not loaded" and fig.layout.title.text == "Attention map"


def test_non_finite_values_become_gaps():
    spec = demo_plots.attention_figure(np.array([[np.nan, 1.0], [0.5, np.inf]]), ["a", "b"], "t")
    assert json.loads(spec.to_json())["data"][0]["z"] == [[None, 1.0], [0.5, None]]



HOSTILE = '<a href="https://example.com">click me</a> & <img src=x onerror=alert(1)>'


def test_names_are_shown_as_text_not_html():
    """Plotly renders a subset of HTML (<a href>, <b>, <br>, ...) in titles, tick labels and hover text: a gallery
    name "<a href=...>click me</a>" became a link in the similarity plot."""
    threshold = Threshold(0.5, "x")
    for fig in (demo_plots.similarity_figure([HOSTILE, "b"], np.array([0.9, 0.1]), np.array([0.9, 0.1]), threshold),
                demo_plots.similarity_figure([HOSTILE, "b"], np.array([0.9, 0.1]), None),
                demo_plots.pose_sweep_figure(np.arange(-90, 91, 10), np.full(19, 0.5), 0.4, HOSTILE, 0, threshold)):
        text = fig.to_json()
        assert "<a " not in text and "<img" not in text and "&lt;a href" in text, text
        figure(fig)
    sim = figure(demo_plots.similarity_figure([HOSTILE], np.array([0.9]), np.array([0.9])))
    assert sim.data[0].customdata[0][0] == demo_plots.plot_text(HOSTILE)   # the whole name on hover, escaped


def test_long_names_are_shortened_and_the_margin_bounded():
    """An 80-character name grew the similarity plot's left margin to 589 px (no room for bars on a phone)."""
    long = "Maximiliane Adelheid " * 4
    fig = figure(demo_plots.similarity_figure([long.strip(), long.strip() + "x", "Group photo, person 3"],
                                              np.array([0.9, 0.8, 0.1]), np.array([0.9, 0.8, 0.2])))
    ticks = list(fig.layout.yaxis.ticktext)
    assert ticks[2] == "Group photo, person 3"   # a name that fits stays whole
    assert all(len(t) <= demo_plots.LABEL_CHARS + 3 for t in ticks) and ticks[0].endswith("…")
    assert len(fig.data[0].y) == 3   # two names that shorten alike stay two rows
    assert fig.layout.margin.l <= 8 + 7 * (demo_plots.LABEL_CHARS + 3)
    assert fig.data[0].customdata[0][0] == long.strip()   # the full name on hover
    assert long.strip() not in fig.layout.title.text and "…" in fig.layout.title.text   # shortened in the title too


def test_attention_shares_are_on_two_lines():
    """On a phone "the photo: 50%" and "its mirror image: 49%" printed over each other: name and share on two lines."""
    labels = ["pose"] + [f"photo {r},{c}" for r in range(7) for c in range(7)] + \
             [f"mirror {r},{c}" for r in range(7) for c in range(7)]
    attention = np.full((len(labels), len(labels)), 1 / len(labels), np.float32)
    fig = figure(demo_plots.face_attention_figure(np.zeros((112, 112, 3), np.uint8), attention, labels, "t"))
    shares = [a.text for a in fig.layout.annotations if "%" in a.text and "pose" not in a.text]
    assert shares == ["the photo<br>49%", "its mirror image<br>49%"], shares


def test_score_split_figure_colours_regions_on_one_scale_with_zero_in_the_middle():
    from viewdiff.demo import split_plot
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    a, b = rng.normal(0, 0.01, (7, 7)), rng.normal(0, 0.03, (7, 7))
    panels = [{"label": "your face", "crop": crop, "regions": a, "total": 0.5, "terms": [("regions", 0.45), ("constant", 0.05)],
               "parts": {"map change": a / 2}},
              {"label": "gallery", "crop": None, "regions": b, "total": 0.5, "terms": [("regions", 0.5)]},
              {"label": "old entry", "crop": crop, "regions": None, "note": "add its photos again"}]
    fig = figure(split_plot.score_split_figure("Why 0.500 for Ada", panels))
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 2 and len([t for t in fig.data if t.type == "image"]) == 3
    assert heat[0].zmin == heat[1].zmin == -heat[0].zmax and heat[0].zmax == pytest.approx(np.abs(b).max(), rel=1e-4)
    assert heat[0].zmid == 0 and "map change" in heat[0].hovertemplate
    assert np.asarray(heat[0].customdata).shape == (7, 7, 3)   # row, column, map change
    texts = [n.text for n in fig.layout.annotations]
    assert "regions +0.450<br>constant +0.050<br>= <b>+0.500</b>" in texts
    assert "add its photos again" in texts and any("agrees" in t and "disagrees" in t for t in texts)
    assert len(spec_json := split_plot.score_split_figure("t", panels).to_json()) < 40_000, len(spec_json)
