"""What a user sees of a run in MLflow's UI, read back from a real sqlite store: gradient-vs-layer
profiles, summary scalars, names, descriptions and tags."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig

from experiments.app.setup import build
from experiments.app.sweep import SweepInfo, _draw_figures
from experiments.app.train import Outcome, _resolved_params, train
from experiments.diagnostics.explosion import exploded_at
from experiments.diagnostics.history import History
from experiments.figures.run_figures import boundary_figure, decade
from experiments.tracking import run as tracking_run
from experiments.tracking.provenance import NO_PRESET, preset_description
from experiments.tracking.run import close_writer
from experiments.tracking.store import browse_hint, runs_url

pytestmark = pytest.mark.xdist_group("mlflow_ui")  # one worker trains the module's fixtures
ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.n_samples=200", "train.epochs=3", "model.width=8", "log.every_n_steps=5"]
DEPTH = 3


def only_run(uri: str, experiment: str = "default") -> Any:
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.fixture(scope="module")
def tracked(
    tmp_path_factory: pytest.TempPathFactory, compose_config: Callable[..., DictConfig]
) -> Iterator[tuple[MlflowClient, Any, Outcome]]:
    """One tiny tanh-d3 run, trained in this process into a store of its own."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder}/mlflow.db"
    outcome = train(compose_config([*TINY, f"mlflow.tracking_uri={uri}"]))
    assert outcome.status == "FINISHED", outcome.error
    let_the_writer_finish()
    yield MlflowClient(uri), only_run(uri), outcome


def let_the_writer_finish() -> None:
    """Let this process's writer go and wait until it has drawn the last run's figures."""
    writer = tracking_run.writer()
    close_writer()
    writer.process.wait(timeout=300)


def points(client: MlflowClient, run: Any, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


@pytest.mark.parametrize("family", ["grad_norm", "delta_norm", "act_var"])
def test_profiles_are_logged_against_the_hidden_layer(tracked: Any, family: str) -> None:
    """profile/* has one point per hidden layer, at step = the layer (1 … depth)."""
    client, run, _ = tracked
    for when in ("init", "final"):
        assert [s for s, _ in points(client, run, f"profile/{family}_{when}")] == [1, 2, 3]


def test_profiles_are_the_first_and_last_recorded_layer_values(tracked: Any) -> None:
    """At init: the per-layer series at step 0; final: at the last recorded step."""
    client, run, _ = tracked
    series = {
        "grad_norm": lambda l: points(client, run, f"grad_norm/layer_{l:02d}"),
        "act_var": lambda l: [(s, v**2) for s, v in points(client, run, f"act_std/layer_{l:02d}")],
    }
    for family, of_layer in series.items():
        init = points(client, run, f"profile/{family}_init")
        final = points(client, run, f"profile/{family}_final")
        for l in range(1, DEPTH + 1):
            over_time = of_layer(l)
            assert over_time[0][0] == 0 and over_time[-1][0] == 10  # 15 steps, every 5
            assert init[l - 1][1] == pytest.approx(over_time[0][1], rel=1e-12)
            assert final[l - 1][1] == pytest.approx(over_time[-1][1], rel=1e-12)


def test_summary_scalars_group_under_one_prefix(tracked: Any) -> None:
    """The run table can sort by summary/*: the test metrics, the lr, the gradient ratio of the
    logged profile, the fractions."""
    client, run, _ = tracked
    metrics = run.data.metrics
    summary = {key for key in metrics if key.startswith("summary/")}
    assert summary == {
        *("summary/log10_grad_ratio_init", "summary/log10_grad_ratio_final"),
        *("summary/dead_fraction", "summary/saturated_fraction"),
        *("summary/test_loss", "summary/test_accuracy", "summary/lr"),
    }
    assert metrics["summary/test_accuracy"] == metrics["test/accuracy"]
    assert metrics["summary/test_loss"] == metrics["test/loss"]
    assert metrics["summary/lr"] == 0.1  # the default SGD lr
    for when in ("init", "final"):
        profile = [v for _, v in points(client, run, f"profile/grad_norm_{when}")]
        ratio = metrics[f"summary/log10_grad_ratio_{when}"]
        assert ratio == pytest.approx(math.log10(profile[0] / profile[-1]), rel=1e-12)
    assert metrics["summary/dead_fraction"] == 0.0  # tanh: f′ > 0 everywhere
    assert 0.0 <= metrics["summary/saturated_fraction"] < 1.0


def test_standard_source_tags_fill_the_uis_version_and_source_columns(tracked: Any) -> None:
    _, run, _ = tracked
    tags = run.data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert tags["git_dirty"] in ("true", "false") and "git_commit" not in tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]


def test_resolved_values_are_logged_instead_of_none(tracked: Any) -> None:
    """data.noise=None means spirals' default 0.1; data.n_samples=200 was given."""
    _, run, _ = tracked
    params = run.data.params
    assert (params["data.n_samples"], params["data.noise"]) == ("200", "0.1")
    assert params["optim.effective_lr"] == params["optim.lr"] == "0.1"  # no lr scaling


def test_effective_lr_under_linear_scaling_and_a_default_dataset_size(
    compose_config: Callable[..., DictConfig],
) -> None:
    cfg = compose_config(["train.lr_scaling=linear", "train.batch_size=64", "data=moons"])
    params = _resolved_params(cfg, build(cfg))
    assert float(params["optim.effective_lr"]) == pytest.approx(0.1 * 64 / 32)
    assert (params["data.n_samples"], params["data.noise"]) == ("1000", "0.1")  # moons' defaults


def test_the_printed_link_opens_the_runs_table(tracked: Any) -> None:
    """MLflow 3.17 opens in its GenAI mode; workflowType=machine_learning lands on the runs."""
    _, run, outcome = tracked
    assert outcome.experiment_id == run.info.experiment_id
    hint = browse_hint("sqlite:////x/mlflow.db", outcome.experiment_id)
    runs = f"#/experiments/{run.info.experiment_id}/runs?workflowType=machine_learning"
    assert (
        hint
        == f"mlflow ui --backend-store-uri sqlite:////x/mlflow.db\n  then open http://127.0.0.1:5000/{runs}"
    )
    assert browse_hint("http://h:5000/", "7") == (
        "open http://h:5000/#/experiments/7/runs?workflowType=machine_learning"
    )


def test_a_presets_description_is_its_files_heading_comment() -> None:
    text = preset_description("batch_size")
    assert text.startswith("Batch size at a fixed number of examples seen (8 epochs of 600")
    assert "@package" not in text and "\n" not in text
    assert preset_description("default") == NO_PRESET


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, Any, list[Any], str]:
    """``-m activation=relu,tanh`` of tiny runs, in a process: (client, parent, children,
    stdout)."""
    folder = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{folder}/mlflow.db"
    command = [sys.executable, "-m", "experiments.train", "-m", "activation=relu,tanh", *TINY]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return client, parent, children, done.stdout


@pytest.mark.slow
def test_a_sweep_describes_itself_and_names_runs_by_what_it_varies(swept: Any) -> None:
    client, parent, children, stdout = swept
    note = parent.data.tags["mlflow.note.content"]
    command = "python -m experiments.train -m activation=relu,tanh " + " ".join(TINY)
    assert note == f"{NO_PRESET}\n\nLaunched with: `{command}`"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.note.content"] == NO_PRESET
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40
    assert {c.info.run_name for c in children} == {"relu · d3-w8-b32-s0", "tanh · d3-w8-b32-s0"}
    link = f"#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
    assert f"then open http://127.0.0.1:5000/{link}" in stdout


@pytest.mark.slow
def test_the_parent_gets_the_sweeps_figures_and_summary_metrics(swept: Any) -> None:
    client, parent, children, stdout = swept
    assert f"figures: logged to parent run {parent.info.run_id} under figures/" in stdout
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/gradient_flow.png", "figures/loss_curves.png"} <= files
    assert {"figures/summary.md", "figures/manifest.json"} <= files
    metrics = parent.data.metrics
    assert metrics["summary/configs"] == 2
    for child in children:
        name = child.data.params["activation.name"]
        assert metrics[f"summary/{name}/test_accuracy"] == child.data.metrics["test/accuracy"]
        assert metrics[f"summary/{name}/lr"] == 0.1


def test_exploded_is_the_first_epoch_above_ten_times_the_initial_val_loss() -> None:
    """Either epoch loss counts, the earlier one wins; exactly 10× is not above; NaN never
    counts, an infinite loss does."""
    h = History()
    for step, train_loss, val_loss in ((4, 2.0, 7.5), (8, 7.1, math.nan), (12, math.inf, 3.0)):
        h.add("epoch", step, {"train/loss": train_loss, "val/loss": val_loss})
    assert exploded_at(h, 0.7) == 4  # val 7.5 > 7
    assert exploded_at(h, 0.75) == 12  # 7.5 is not above 7.5, 7.1 neither: the inf at 12
    assert exploded_at(h, 0.2) == 4  # val 7.5 > 2 (train 2.0 is not above)
    assert exploded_at(History(), 1.0) is None


def test_a_finite_blow_up_is_tagged_exploded_with_its_step(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    """SGD at lr 10: the loss of a tanh net jumps ≈ 40× in the first epoch (4 steps) but
    stays finite; diverged stays false."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [*TINY, "optim.lr=10", "mlflow.run_figures=false", f"mlflow.tracking_uri={uri}"]
    try:
        outcome = train(compose_config(args))
    finally:
        let_the_writer_finish()
    assert outcome.status == "FINISHED" and outcome.diverged_at_step is None
    run = only_run(uri)
    tags = run.data.tags
    assert (tags["exploded"], tags["exploded_at_step"], tags["diverged"]) == ("true", "4", "false")
    files = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert "figures" not in files  # mlflow.run_figures=false


@pytest.mark.parametrize(("stage", "drawn"), [("tune", False), ("final", True)])
def test_the_reported_runs_get_their_figures_the_tuning_runs_none(
    tmp_path: Path, compose_config: Callable[..., DictConfig], stage: str, drawn: bool
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        train(compose_config([*TINY, f"stage={stage}", f"mlflow.tracking_uri={uri}"]))
    finally:
        let_the_writer_finish()
    files = {a.path for a in MlflowClient(uri).list_artifacts(only_run(uri).info.run_id)}
    assert ("figures" in files) is drawn


@pytest.mark.parametrize(
    ("overrides", "per_layer"),
    [
        (["stage=tune"], False),
        (["stage=tune", "log.tuning_diagnostics=true"], True),
        (["stage=final"], True),
    ],
)
def test_the_tuning_runs_log_their_epochs_the_reported_runs_every_layer(
    tmp_path: Path, compose_config: Callable[..., DictConfig], overrides: list[str], per_layer: bool
) -> None:
    """A tuning run only chooses an lr (on its val loss): its epochs, test and summary metrics
    go to MLflow; the per-layer diagnostics only with log.tuning_diagnostics=true."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        train(compose_config([*TINY, *overrides, f"mlflow.tracking_uri={uri}"]))
    finally:
        let_the_writer_finish()
    families = {key.split("/")[0] for key in only_run(uri).data.metrics}
    assert {"train", "val", "progress", "test", "summary"} <= families
    per_layer_families = {"grad_norm", "act_std", "dead", "profile", "signal_var", "theory"}
    assert (per_layer_families <= families) is per_layer
    assert (families & per_layer_families == set()) is not per_layer


def test_a_run_that_learns_is_not_exploded(tracked: Any) -> None:
    _, run, _ = tracked
    assert run.data.tags["exploded"] == "false" and "exploded_at_step" not in run.data.tags


def test_each_run_gets_its_own_figures(tracked: Any, tmp_path: Path) -> None:
    """Drawn by the writer after the run ended: the profile, the loss curves and, spirals
    being 2-D, the decision boundary, as PNGs the UI previews."""
    from matplotlib.image import imread

    client, run, _ = tracked
    files = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert files == {f"figures/{name}.png" for name in ("profile", "loss", "boundary")}
    for name in files:
        pixels = imread(client.download_artifacts(run.info.run_id, name, str(tmp_path)))
        width = 240 if name.endswith("boundary.png") else 460  # 2.4 or 4.6 in at 100 dpi
        assert pixels.shape[1] == width and pixels.std() > 0, name
    assert "figures_error" not in run.data.tags


def test_no_boundary_figure_without_2d_classes() -> None:
    assert boundary_figure(Path("unread.npz"), {"data.name": "teacher"}) is None


def test_sweep_figures_that_fail_say_how_to_draw_them_again(
    tracked: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """No such parent run: the plots command fails; the sweep's end says so and goes on."""
    client, run, _ = tracked
    uri = client.tracking_uri
    info = SweepInfo(uri, run.info.experiment_id, "0" * 32, 1, [], [], {})
    _draw_figures(info)
    out = capsys.readouterr().out
    assert out.startswith("figures: not drawn (")
    again = f"python -m experiments.plots --sweep {'0' * 32} --tracking-uri {uri}"
    assert out.endswith(f"draw them with:\n  {again}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(spawn: Any, uri: str) -> str:
    """``mlflow server`` on the store ``uri`` at a free loopback port (its session is killed by
    the spawn fixture, background job consumers off); its base URL once /health answers."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow), "server", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = spawn(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=3):
                return base
        except OSError:
            assert time.monotonic() < deadline, "mlflow server did not answer in 180 s"
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_a_browser_finds_the_runs_table_the_profile_chart_and_the_run_figures(
    swept: Any, spawn: Any, tmp_path: Path
) -> None:
    """A real headless Chromium on a real ``mlflow server``: the printed link shows the runs
    table; its chart view overlays the children's gradient-vs-layer profiles; a run's chart view
    has the profile section; its figures and the parent's sweep figures preview as images.
    Screenshots: SCREENSHOTS (``$BPLAB_SCREENSHOTS`` or this test's folder)."""
    from playwright.sync_api import Page, expect, sync_playwright

    expect.set_options(timeout=60_000)  # a busy machine draws charts slowly

    client, parent, children, _ = swept
    base = serve(spawn, client.tracking_uri)
    shots = Path(os.environ.get("BPLAB_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    experiment = parent.info.experiment_id
    child = children[0]
    run_page = f"{base}/#/experiments/{experiment}/runs/{child.info.run_id}"

    def preview(page: Page, run_page: str, figure: str) -> None:
        page.goto(f"{run_page}/artifacts")
        page.get_by_text("figures", exact=True).first.click()
        page.get_by_text(figure, exact=True).first.click()
        expect(page.get_by_text(f"figures/{figure}", exact=True)).to_be_visible()
        expect(page.locator("img[src^='blob:']").first).to_be_visible()  # the PNG itself

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(runs_url(base, experiment))
            expect(page.get_by_text(parent.info.run_name).first).to_be_visible()
            page.get_by_role("button", name="Close").click()  # MLflow's assistant panel
            page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            for run in children:  # the parent expanded: its runs, swept parts first
                expect(page.get_by_text(run.info.run_name).first).to_be_visible()
            page.screenshot(path=shots / "1-runs-table.png")

            page.goto(runs_url(base, experiment) + "&compareRunsMode=CHART")  # stays expanded
            expect(page.get_by_text(child.info.run_name).first).to_be_visible()
            page.get_by_placeholder("Search metric charts").fill("profile/grad_norm")
            for chart in ("profile/grad_norm_init", "profile/grad_norm_final"):
                expect(page.get_by_text(chart, exact=True).first).to_be_visible()
            lines = page.locator(".js-plotly-plot .scatterlayer .trace")  # the drawn profiles
            expect(lines.nth(2 * len(children) - 1)).to_be_attached()  # each child, both charts
            page.screenshot(path=shots / "2-profiles-overlaid.png")

            page.goto(f"{run_page}/model-metrics")
            page.get_by_placeholder("Search metric charts").fill("profile/")
            for chart in ("grad_norm_init", "grad_norm_final", "delta_norm_init", "act_var_final"):
                expect(page.get_by_text(chart, exact=True).first).to_be_visible()
            expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
            page.screenshot(path=shots / "3-run-profile-charts.png")

            preview(page, run_page, "profile.png")
            page.screenshot(path=shots / "4-run-profile-figure.png")

            parent_page = f"{base}/#/experiments/{experiment}/runs/{parent.info.run_id}"
            preview(page, parent_page, "gradient_flow.png")
            page.screenshot(path=shots / "5-sweep-gradient-flow.png")
        finally:
            browser.close()
    print(f"screenshots: {shots}")


@pytest.mark.slow
def test_a_run_on_a_tracking_server_gets_its_figures_too(
    spawn: Any, tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    """Artifacts go through the server: the writer draws from the uploaded folder it kept."""
    base = serve(spawn, f"sqlite:///{tmp_path}/mlflow.db")
    try:
        outcome = train(compose_config([*TINY, f"mlflow.tracking_uri={base}"]))
    finally:
        let_the_writer_finish()
    assert outcome.status == "FINISHED", outcome.error
    run = only_run(base)
    files = {a.path for a in MlflowClient(base).list_artifacts(run.info.run_id, "figures")}
    assert files == {f"figures/{name}.png" for name in ("profile", "loss", "boundary")}


def test_run_figures_label_log_axes_with_powers_of_ten_in_plain_text() -> None:
    assert [decade(v) for v in (1e-3, 1.0, 100.0, 1e-12)] == ["10⁻³", "10⁰", "10²", "10⁻¹²"]
    assert decade(3e-3) == "" and decade(0.0) == ""
