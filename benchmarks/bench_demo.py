"""Demo latency as a visitor feels it, measured in headless Chromium (prints numbers, not a test).

    python benchmarks/bench_demo.py [--moves 30] [--toggles 3] [--window 1400,1000] [--url http://127.0.0.1:7860/]
                                    [--space] [-- APP ARGS]

Starts ``app.py`` on a free 127.0.0.1 port (or uses ``--url``), uploads photos and drags the yaw
slider. Times are taken inside the page (``performance.now()``). The page draws a plot only when it is
in view (`app.DRAW_PLOT`), so each time waits for the plots in the window at its start; the output names
them. ``--window 1400,2400`` puts every plot in view while the slider moves.

- photo -> result: from handing the file to the upload input until the face panel names the photo
  and the plots in view have been redrawn (upload, face analysis, model, plots, rendering);
- slider release -> plots: from the slider's ``pointerup`` until the plots in view that a yaw move
  changes (similarity, attention, voxels) have been redrawn by plotly, the pose sweep's target-yaw
  marker sits at the new yaw, and the next frame has been painted;
- first photo after load: the first of these uploads, on a freshly started app (not with ``--url``): the
  plots appear for the first time and the server analyses its first photo;
- the 12 MP photo: assets/t1.jpg upscaled to 4000 x 2768 (JPEG quality 92), a phone photo's size;
- 3D view toggle: from clicking "3D isosurface view" until the voxel plot is redrawn (on: a 3D scene,
  WebGL software-rendered in headless Chromium; off: back to the slice), each ``--toggles`` times;
- dragging: the yaw slider held and moved across its width for 3 s; the similarity plot's redraws per
  second while it is held (the plots follow a drag). Without transformer weights only the similarity
  plot changes on a photo, and a slider move changes nothing: the slider figures are then not measured.

``--space`` runs the app as a simulated Space (no ../shared, no network, empty home). ``--server``
times only the slider callback in this process (model + figures, no browser, no network): what the
older ``python -m viewdiff.demo.service --bench`` printed.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from viewdiff.demo.local_server import running_app, space_env  # noqa: E402

PLOTS = ("similarity-plot", "sweep-plot", "attention-plot", "voxel-plot")
# Remember each plot's current data array; plotly replaces it on every redraw.
JS_ARM = """
window.__bench = {t0: null, t1: null, refs: {}, seen: {}, status: null};
for (const id of arguments[0]) {
  const g = document.querySelector('#' + id + ' .js-plotly-plot');
  window.__bench.refs[id] = g ? g.data : null;
}
const ids = arguments[0], check = arguments[1];
const statusText = (document.querySelector('#status') || {}).innerText;
function done() {
  const b = window.__bench, now = performance.now();
  if (b.status === null && (document.querySelector('#status') || {}).innerText !== statusText) b.status = now;
  for (const id of ids) {
    const g = document.querySelector('#' + id + ' .js-plotly-plot');
    if (!(id in b.seen) && g && g.data && g.data !== b.refs[id]) b.seen[id] = now;
  }
  let marker = true;
  if (check === 'yaw') {  // the pose sweep's target-yaw marker (app.SWEEP_MARKER) sits at the slider's value
    const line = document.querySelector('#sweep-plot .vd-marker');
    const yaw = Number(document.querySelector('#yaw input[type=number]').value);
    marker = line !== null && Number(line.dataset.yaw) === yaw;
    if (marker && !('sweep marker' in b.seen)) b.seen['sweep marker'] = now;
  }
  return ids.every(id => id in b.seen) && marker
         && (!check || check === 'yaw' || document.querySelector(check[0]).innerText.includes(check[1]));
}
function poll() {
  if (window.__bench.t0 !== null && done()) {
    requestAnimationFrame(() => { window.__bench.t1 = performance.now(); });
    return;
  }
  requestAnimationFrame(poll);
}
requestAnimationFrame(poll);
"""
JS_START_ON_RELEASE = """
const input = document.querySelector('#yaw input[type=range]');
input.addEventListener('pointerup', () => { window.__bench.t0 = performance.now(); }, {once: true, capture: true});
"""


def driver(window: str = "1400,1000"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={window}", f"--user-data-dir={tempfile.mkdtemp(prefix='bench-chrome-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


BREAKDOWN: dict[str, list[float]] = {}  # "status" (the reply reached the page) and each plot: ms after t0


def wait_for(browser, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = browser.execute_script("const b = window.__bench; return b && b.t1 !== null ? b : null")
        if b is not None:
            for key, t in [("status", b["status"]), *b["seen"].items()]:
                if t is not None:
                    BREAKDOWN.setdefault(key, []).append(float(t) - float(b["t0"]))
            return float(b["t1"]) - float(b["t0"])
        time.sleep(0.02)
    raise TimeoutError("the page did not update")


def has_model(browser) -> bool:
    """Whether the page has a pose transformer: its Layer / Head controls are shown only then."""
    return any(e.is_displayed() for e in browser.find_elements("id", "layer"))


# The plots in (or within 100 px of) the window: the page draws a plot out of view when it comes into view.
JS_IN_VIEW = """return arguments[0].filter(id => { const r = document.getElementById(id).getBoundingClientRect();
  return r.height > 0 && r.bottom > -100 && r.top < window.innerHeight + 100; });"""


def upload(browser, path: Path) -> float:
    from selenium.webdriver.common.by import By
    for button in browser.find_elements(By.CSS_SELECTOR, "#photo button[aria-label='Remove Image']"):
        button.click()
        time.sleep(0.3)
    file_input = browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]")
    # without transformer weights only the similarity plot changes from photo to photo
    no_model = not has_model(browser)
    plots = ["similarity-plot"] if no_model else browser.execute_script(JS_IN_VIEW, list(PLOTS))
    browser.execute_script(JS_ARM, plots, ["#face-info", path.name])
    browser.execute_script("window.__bench.t0 = performance.now()")
    file_input.send_keys(str(path))
    return wait_for(browser)


IN_VIEW: set[str] = set()   # the plots a slider move was timed on


def move_yaw(browser, fraction: float) -> float:
    """Click-and-release the yaw slider at ``fraction`` of its width; ms from release until the plots in view
    that a yaw move changes (similarity, attention, voxels) are redrawn and the sweep's marker has moved."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    slider = browser.find_element(By.CSS_SELECTOR, "#yaw input[type=range]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'nearest'})", slider)
    plots = browser.execute_script(JS_IN_VIEW, [p for p in PLOTS if p != "sweep-plot"])
    IN_VIEW.update(plots)
    browser.execute_script(JS_ARM, plots, "yaw")
    browser.execute_script(JS_START_ON_RELEASE)
    width = slider.size["width"]
    ActionChains(browser).move_to_element_with_offset(slider, int((fraction - 0.5) * width * 0.96), 0) \
        .click_and_hold().release().perform()
    return wait_for(browser)


# Count the similarity plot's redraws (plotly replaces its data array on each) between press and release.
JS_COUNT_REDRAWS = """
const b = window.__drag = {down: null, up: null, redraws: 0};
const g = () => document.querySelector('#similarity-plot .js-plotly-plot');
let last = g() && g().data;
const input = document.querySelector('#yaw input[type=range]');
input.addEventListener('pointerdown', () => { b.down = performance.now(); }, {once: true, capture: true});
input.addEventListener('pointerup', () => { b.up = performance.now(); }, {once: true, capture: true});
(function poll() {
  const data = g() && g().data;
  if (data && data !== last && b.down !== null && b.up === null) b.redraws += 1;
  last = data;
  if (b.up === null) requestAnimationFrame(poll);
})();
"""


def drag_yaw(browser, seconds: float = 3.0, steps: int = 60) -> float:
    """Hold the yaw slider and drag it across ~80% of its width in ``steps`` moves over ``seconds``;
    -> plot updates per second while the button is held (similarity-plot redraws / hold time)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    slider = browser.find_element(By.CSS_SELECTOR, "#yaw input[type=range]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
    browser.execute_script(JS_COUNT_REDRAWS)
    width = slider.size["width"]
    chain = ActionChains(browser, duration=0).move_to_element_with_offset(slider, int(-0.4 * width), 0).click_and_hold()
    for _ in range(steps):
        chain = chain.move_by_offset(int(0.8 * width / steps), 0).pause(seconds / steps)
    chain.release().perform()
    b = browser.execute_script("return window.__drag")
    return b["redraws"] / max((b["up"] - b["down"]) / 1000, 1e-3)


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return (f"{name}: median {statistics.median(values):.0f} ms, p90 {p90:.0f} ms, "
            f"min {values[0]:.0f} ms, max {values[-1]:.0f} ms (n={len(values)})")


def one_megapixel_photo(folder: Path) -> Path:
    """astronaut.jpg (512 px, one face) resized to 1024 x 1024 (1.05 MP), JPEG quality 92."""
    from PIL import Image
    path = folder / "astronaut_1mp.jpg"
    Image.open(REPO / "assets" / "astronaut.jpg").resize((1024, 1024), Image.LANCZOS).save(path, quality=92)
    return path


def twelve_megapixel_photo(folder: Path) -> Path:
    """assets/t1.jpg (1280 x 886, six faces) upscaled to 4000 x 2768 (11 MP, a phone photo), JPEG quality 92."""
    from PIL import Image
    path = folder / "t1_12mp.jpg"
    Image.open(REPO / "assets" / "t1.jpg").resize((4000, 2768), Image.LANCZOS).save(path, quality=92)
    return path


def toggle_3d(browser, toggles: int) -> dict[str, list[float]]:
    """Click the 3D view checkbox `toggles` times each way; ms until the voxel plot is redrawn."""
    from selenium.webdriver.common.by import By
    box = browser.find_element(By.CSS_SELECTOR, "#as-3d input[type=checkbox]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    browser.execute_script("document.getElementById('voxel-plot').scrollIntoView({block: 'nearest'})")
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(toggles):
        for way in ("on", "off"):
            browser.execute_script(JS_ARM, ["voxel-plot"], None)
            browser.execute_script("window.__bench.t0 = performance.now()")
            box.click()
            times[way].append(wait_for(browser))
            time.sleep(0.5)
    return times


def run(url: str, moves: int, photos: list[Path], window: str, toggles: int = 3, fresh: bool = True) -> None:
    browser = driver(window)
    try:
        browser.get(url)
        time.sleep(2)
        first = upload(browser, photos[-1])   # the plot areas (and the model's controls) show after a first photo
        if fresh:
            print(f"first photo after load ({photos[-1].name}, app just started): {first:.0f} ms")
        photo_ms: dict[str, list[float]] = {}
        for _ in range(3):
            for path in photos:
                photo_ms.setdefault(path.name, []).append(upload(browser, path))
                time.sleep(0.5)
        slider_ms = []
        BREAKDOWN.clear()
        if not has_model(browser):
            moves = 0
        for i in range(moves):
            slider_ms.append(move_yaw(browser, 0.1 + 0.8 * ((i * 7) % 11) / 10))
            time.sleep(0.2)
        drags = [drag_yaw(browser) for _ in range(3 if moves else 0)]
        flips = toggle_3d(browser, toggles) if moves and toggles else {}
        for name, values in photo_ms.items():
            print(summary(f"photo -> result ({name})", values))
        if slider_ms:
            print(summary(f"yaw slider release -> plots in view redrawn ({', '.join(sorted(IN_VIEW))})", slider_ms))
        if drags:
            print(f"yaw slider dragged for 3 s: {statistics.median(drags):.1f} plot updates per second (median of "
                  f"{len(drags)} drags: {', '.join(f'{d:.1f}' for d in drags)})")
        for way, values in flips.items():
            print(summary(f"3D view toggled {way} -> voxel plot redrawn", values))
        for key, values in BREAKDOWN.items():
            print("   " + summary(f"release -> {'status text (reply arrived)' if key == 'status' else key + ' redrawn'}",
                                  values))
    finally:
        browser.quit()


def server_only(moves: int, weights: str | None) -> None:
    """Median / p90 ms of the slider callback (yaw moves reuse the sweep, pitch moves recompute it)."""
    import numpy as np

    from viewdiff.demo.service import DemoService, ViewOptions
    service = DemoService.load(weights_dir=weights)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"yaw move": [], "pitch move": []}
    for photo in (REPO / "assets" / name for name in ("astronaut.jpg", "t1_face_yaw55.jpg", "cameraman_gray.png")):
        session = service.on_photo(str(photo), (0, 0, 0), ViewOptions(), None).values.get("session")
        for i in range(moves if session is not None else 0):
            kind = "pitch move" if i % 3 == 0 else "yaw move"
            pose = (float(rng.integers(-90, 91)), float(rng.integers(-30, 31)) if kind == "pitch move" else 0.0, 0.0)
            start = time.perf_counter()
            service.on_target(pose, ViewOptions(), session, client_moves_marker=True)
            times[kind].append((time.perf_counter() - start) * 1000)
    for kind, values in times.items():
        if values:
            print(summary(f"server: {kind} callback", values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--url", default=None, help="a running demo (default: start app.py)")
    parser.add_argument("--space", action="store_true", help="run app.py as a simulated Space")
    parser.add_argument("--window", default="1400,1000",
                        help="browser window WIDTH,HEIGHT (1400,2400: every plot in view while the slider moves)")
    parser.add_argument("--toggles", type=int, default=3, help="times the 3D view is switched on and off")
    parser.add_argument("--server", action="store_true", help="time the slider callback in this process only")
    parser.add_argument("--weights", default=None, help="transformer weights for --server")
    parser.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = parser.parse_args()
    if args.server:
        server_only(args.moves, args.weights)
        return
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        photos = [one_megapixel_photo(Path(tmp)), twelve_megapixel_photo(Path(tmp)), REPO / "assets" / "t1.jpg",
                  REPO / "assets" / "t1_face_yaw55.jpg"]
        if args.url:
            run(args.url, args.moves, photos, args.window, args.toggles, fresh=False)
            return
        env = space_env(Path(tmp)) if args.space else None
        with contextlib.ExitStack() as stack:
            url, _ = stack.enter_context(running_app(args.app_args, Path(tmp) / "app.log", env))
            print(f"app.py {' '.join(args.app_args)} at {url}{' (Space mode)' if args.space else ''}")
            run(url, args.moves, photos, args.window, args.toggles)


if __name__ == "__main__":
    main()
