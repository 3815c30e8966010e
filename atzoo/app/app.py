"""The leaderboard app: Leaderboard, Compare, Generalization, Demo, Submit and About tabs (Gradio).

Every request reads the registry through :func:`load_snapshot`, which answers from memory until
an entry file changes. Every data function has an ``api_name``, so the app is scriptable with
``gradio_client``. A user's bad input is answered with ``gr.Error`` (a message in the page),
never a stack trace.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

import gradio as gr
import pandas as pd

from atzoo.errors import AtzooError, FormatError
from atzoo.formats.jsonfile import parse_json
from atzoo.app import demo as demo_logic
from atzoo.app import plots
from atzoo.app.colours import MethodColours, status_colour
from atzoo.app.generalization import generalization_tab
from atzoo.app.sessionfiles import DELETE_CACHE, SessionFiles
from atzoo.formats.entry import RELEASES
from atzoo.leaderboard.board_dataset import load_board_dataset, resolve_source
from atzoo.leaderboard.detail import URL_PARAMETER, detail_markdown, entry_detail
from atzoo.leaderboard.entry_check import submission_problems
from atzoo.leaderboard.store import Snapshot, load_snapshot
from atzoo.leaderboard.table import (ANY_TIME, COLUMNS, DEFAULT_RELEASE, METRIC_CHOICES, METRIC_LABELS,
                                     SORT_CHOICES, Filters, backbone_choices, build_table, entry_choices,
                                     rows_to_csv, task_family_choices)
from atzoo.protocol import SCENARIO_NAMES

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pandas.io.formats.style import Styler
    from PIL import Image

    from atzoo.leaderboard.table import Table
    from atzoo.registry import Registry

log = logging.getLogger(__name__)

LOCAL_CHOICE = "local path (below)"
MAX_ENTRY_BYTES = 1024 * 1024
MAX_UPLOAD = "25mb"
NUMBER_COLUMNS = {"Rank", ANY_TIME, *SCENARIO_NAMES, "Params (M)"}
COMPARE_DEFAULT = 4
COLUMN_WIDTHS = {"Rank": "64px", "Method": "210px", "ID": "200px", "Status": "175px", "Backbone": "240px",
                 "Task family": "110px", "Params (M)": "100px", "Flags": "240px"}
PINNED_COLUMNS = COLUMNS.index("Method") + 1
"""Rank and Method stay in view while the wide table scrolls sideways."""
APP_CSS = f"""
#lb-table th[data-testid="header-0"], #lb-table [data-testid^="cell-"][data-testid$="-0"] {{
  position: sticky; left: 0; z-index: 3; background-color: var(--table-odd-background-fill, white);
}}
#lb-table th[data-testid="header-1"], #lb-table [data-testid^="cell-"][data-testid$="-1"] {{
  position: sticky; left: {COLUMN_WIDTHS["Rank"]}; z-index: 3; background-color: var(--table-odd-background-fill, white);
  box-shadow: 2px 0 0 var(--border-color-primary, #e5e7eb);
}}
"""
"""Pins Rank and Method (gradio's own ``pinned_columns`` is passed too, but this version of its
table does not pin): sticky cells over an opaque background while the table scrolls sideways."""

ABOUT = """
## The benchmark

AT-USTC evaluates **anytime person re-identification** in six scenarios: day-time (DT, RGB),
night-time (NT, infrared) and all-day (AD, cross-modality), each short-term (ST, same clothes)
and long-term (LT, clothes changed). **Any-Time** is the plain mean of the six scenarios; the
project computes it, submitters never provide it. Metrics are Rank-1 (R1), mAP and mINP in percent.

## Dataset releases

Numbers on the 403k release, the 135k release and the synthetic dataset are not comparable,
so one table shows one release, never a mix.

## The licence rule

AT-USTC is licensed for research and may not be redistributed: its images are never shipped,
uploaded or rendered here. The Demo tab uses images you upload or the bundled *synthetic*
gallery, drawn by atzoo's procedural generator. Only aggregate metrics ever leave a machine.

## Trust tiers

The board ranks trust before scores: **verified** entries (re-evaluated by the shared runner and
signed, Ed25519, by a verifier whose public key the registry lists) first, then the papers'
**reported** rows, then **submitted** entries not verified yet. Sorting by a column re-orders rows
inside their tier. An entry whose verification ended **mismatch** or **failed** is listed below
all of them, with the reason, and has no rank. A verified block that is not signed by a listed
verifier is refused.

## How verification works

A submission names its weights by Hub repo, pinned commit and sha256. `atzoo leaderboard verify
ENTRY --data ROOT` downloads exactly those weights (the hash is checked), evaluates them with the
shared runner on a local copy of the dataset and compares every reported number with the measured
one. Within the stated tolerance the entry becomes **verified**; otherwise **mismatch** (or
**failed** when it cannot be evaluated). The paper's rows are marked **reported by paper**: no
weights were published, so they cannot be verified.

## Test-time tricks and moderation

Re-ranking, flip or other test-time augmentation and query expansion must be disclosed; entries
using them, flagged entries and withdrawn entries are hidden by default and the table says how
many were hidden.
"""


def shown_in_page(function: Callable) -> Callable:
    """Turn the library's errors into a message shown in the page; never a stack trace."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except AtzooError as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:  # noqa: BLE001 - the page must show a message, not a traceback
            log.exception("leaderboard app: unexpected error in %s", function.__name__)
            raise gr.Error(f"unexpected error ({type(error).__name__}): {error}", print_exception=False) from None

    return wrapper


def _file_path(value: Any) -> str | None:
    """The local path of an uploaded file, whatever form gradio hands it in."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return getattr(value, "path", None) or getattr(value, "name", None)


class LeaderboardApp:
    """The handlers behind the page, bound to one registry (and optionally one runner folder)."""

    def __init__(self, leaderboard_dir: str | os.PathLike, *, runner_dir: str | os.PathLike | None = None,
                 demo_models: Mapping[str, str] | Sequence[str] | None = None, registry: Registry | None = None,
                 allow_local_paths: bool = False, source: str | None = None) -> None:
        self.root = Path(leaderboard_dir)
        self.board = None if source is None else load_board_dataset(resolve_source(source))
        self.allow_local_paths = allow_local_paths
        self.runner_dir = Path(runner_dir) if runner_dir else None
        if self.runner_dir is not None:
            self._check_runner_dir()
        if isinstance(demo_models, Mapping):
            self.demo_models = dict(demo_models)
        else:
            self.demo_models = {str(ref): str(ref) for ref in demo_models or ()}
        self.models = demo_logic.ModelCache(registry)
        self.registry = registry
        self.files = SessionFiles()
        self.snapshot()

    def snapshot(self) -> Snapshot:
        """The registry's entries (re-read when a file changed), or the board dataset served."""
        return self.board if self.board is not None else load_snapshot(self.root)

    # -- Leaderboard -------------------------------------------------------------------------

    @staticmethod
    def filters(release: str, verified_only: bool, task_families: Sequence[str] | None,
                backbones: Sequence[str] | None, show_flagged: bool, include_tricks: bool, search: str) -> Filters:
        return Filters(release=release or DEFAULT_RELEASE, verified_only=bool(verified_only),
                       task_families=tuple(task_families or ()), backbones=tuple(backbones or ()),
                       show_flagged=bool(show_flagged), include_tricks=bool(include_tricks),
                       include_withdrawn=bool(show_flagged), search=search or "")

    def table(self, metric: str, release: str, verified_only: bool, task_families: Sequence[str] | None,
              backbones: Sequence[str] | None, show_flagged: bool, include_tricks: bool, search: str,
              sort_by: str) -> Table:
        filters = self.filters(release, verified_only, task_families, backbones, show_flagged, include_tricks,
                               search)
        return build_table(self.snapshot(), metric or "rank1", filters, sort_by or ANY_TIME)

    def leaderboard(self, metric: str, release: str, verified_only: bool, task_families: Sequence[str] | None,
                    backbones: Sequence[str] | None, show_flagged: bool, include_tricks: bool, search: str,
                    sort_by: str) -> tuple[Styler, str]:
        """The table (numbers shown with two decimals) and a line on what it shows and hides."""
        table = self.table(metric, release, verified_only, task_families, backbones, show_flagged, include_tricks,
                           search, sort_by)
        frame = pd.DataFrame([[row[c] for c in COLUMNS] for row in table.rows], columns=list(COLUMNS))
        unranked = sum(1 for row in table.rows if row["Rank"] is None)
        summary = self.summary(len(table.rows), table.hidden_message, release or DEFAULT_RELEASE, metric, unranked)
        return _styled(frame, self.method_colours()), summary

    def summary(self, shown: int, hidden: str, release: str, metric: str, unranked: int = 0) -> str:
        label = METRIC_LABELS.get(metric, metric)
        parts = [f"**{shown} entr{'y' if shown == 1 else 'ies'}** on the {release} release, {label} in percent."]
        if unranked:
            who = "None of them reports" if unranked == shown else f"{unranked} of them do not report"
            parts.append(f"{who} {label} for every scenario, so {'they are' if unranked > 1 else 'it is'} "
                         f"listed without a rank.")
        if hidden:
            parts.append(f"{hidden} (tick *show flagged / withdrawn* or *include test-time tricks* to see them).")
        problems = self.snapshot().problems
        if problems:
            parts.append(f"{len(problems)} entry file(s) failed validation and are not shown: "
                         + ", ".join(sorted(problems)) + ".")
        return " ".join(parts)

    def csv(self, metric: str, release: str, verified_only: bool, task_families: Sequence[str] | None,
            backbones: Sequence[str] | None, show_flagged: bool, include_tricks: bool, search: str,
            sort_by: str, request: gr.Request | None = None) -> str:
        """The table shown, as a CSV file to download (in the session's folder, deleted when it ends)."""
        from atzoo.io import write_text_atomic

        table = self.table(metric, release, verified_only, task_families, backbones, show_flagged, include_tricks,
                           search, sort_by)
        folder = self.files.folder(request)
        path = folder / f"atzoo-leaderboard-{release or DEFAULT_RELEASE}-{metric or 'rank1'}.csv"
        write_text_atomic(path, rows_to_csv(table.rows))
        return str(path)

    def _check_runner_dir(self) -> None:
        """Refuse at startup what the queue would refuse on every request: a file, or a folder that
        is not a runner directory. A path that does not exist yet is fine: the first job creates it."""
        from atzoo.service import queue_rows

        if self.runner_dir is not None:
            queue_rows(self.runner_dir)

    def queue(self) -> pd.DataFrame:
        """The verification queue of the configured runner folder, or one row saying why there is none."""
        if self.runner_dir is None:
            return pd.DataFrame({"message": ["no runner directory configured"]})
        from atzoo.service import queue_rows

        rows = queue_rows(self.runner_dir)
        return pd.DataFrame(rows) if rows else pd.DataFrame({"message": ["the queue is empty"]})

    # -- Compare -----------------------------------------------------------------------------

    def default_compare(self, release: str = DEFAULT_RELEASE) -> list[str]:
        rows = build_table(self.snapshot(), "rank1", Filters(release=release)).rows
        return [row["ID"] for row in rows[:COMPARE_DEFAULT]]

    def compare_release(self, release: str) -> dict[str, Any]:
        """Switching the release offers that release's entries only and selects its best ones."""
        release = release or DEFAULT_RELEASE
        return gr.update(choices=entry_choices(self.snapshot(), release), value=self.default_compare(release))

    def compare(self, entry_ids: Sequence[str] | None, metric: str,
                release: str = DEFAULT_RELEASE) -> tuple[Figure, Figure, Figure, Figure]:
        """The four comparison figures for the selected entries, all of one release."""
        snapshot = self.snapshot()
        release = release or DEFAULT_RELEASE
        entries = [snapshot.get(entry_id) for entry_id in entry_ids or ()]
        others = [entry.id for entry in entries if entry.dataset.release != release]
        if others:
            raise AtzooError(f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} not on the {release} release; "
                             f"releases are never compared with each other")
        metric = metric or "rank1"
        colours = self.method_colours()
        return (plots.radar_plot(entries, metric, colours), plots.gap_plot(entries, metric, colours),
                plots.reported_vs_verified_plot(entries, metric, colours),
                plots.anytime_vs_params_plot(entries, metric, colours))

    def method_colours(self) -> MethodColours:
        """The colour of every method of the registry, shared by the table and the plots."""
        return MethodColours(entry.method.name for entry in self.snapshot().entries)

    # -- Entry detail ------------------------------------------------------------------------

    def detail(self, entry_id: str | None) -> str:
        """One entry whole, as Markdown (empty when no entry is chosen)."""
        chosen = (entry_id or "").strip()
        return detail_markdown(entry_detail(self.snapshot(), chosen)) if chosen else ""

    def detail_from_row(self, event: gr.SelectData) -> tuple[str, Any]:
        """Selecting a row of the table opens its entry."""
        row = event.row_value or []
        entry_id = row[COLUMNS.index("ID")] if len(row) > COLUMNS.index("ID") else None
        return self.detail(entry_id), gr.update(open=True)

    def detail_from_url(self, request: gr.Request) -> tuple[str, Any]:
        """``?entry=ID`` in the page's address opens that entry's detail."""
        entry_id = (request.query_params.get(URL_PARAMETER) if request is not None else None) or ""
        if not entry_id:
            return "", gr.update()
        try:
            return self.detail(entry_id), gr.update(open=True)
        except AtzooError as error:
            return f"### Entry not found\n\n{error}", gr.update(open=True)

    # -- Demo --------------------------------------------------------------------------------

    def model_choices(self) -> list[str]:
        """The shipped synthetic-data package first (the default, works with no download), then the
        models the app was given, registered zoo weights, pulled packages and the quickstart's run."""
        try:
            zoo = demo_logic.zoo_choices(self.registry)
        except AtzooError as error:
            log.warning("leaderboard app: the zoo cannot be listed: %s", error)
            zoo = []
        return [*zoo[:1], *self.demo_models, *zoo[1:], *self.local_models(),
                *([LOCAL_CHOICE] if self.allow_local_paths else [])]

    def local_models(self) -> dict[str, str]:
        try:
            return demo_logic.local_models()
        except AtzooError as error:
            log.warning("leaderboard app: local models cannot be listed: %s", error)
            return {}

    def model_reference(self, choice: str | None, local_path: str | None) -> str:
        """The model to load: one of the offered choices, or a local path where the app allows them
        (on a public deployment a visitor must not make the server open arbitrary folders)."""
        if choice == LOCAL_CHOICE or not choice:
            if not self.allow_local_paths:
                raise AtzooError("this app does not load models from local paths; choose one of the listed models")
            if local_path is None or not local_path.strip():
                raise AtzooError("give the path of a model package or run directory, or choose a zoo model")
            return local_path.strip()
        if choice not in self.model_choices():
            raise AtzooError(f"unknown model {choice!r}; choose one of: {', '.join(self.model_choices())}")
        return {**self.local_models(), **self.demo_models}.get(choice, choice)

    def demo(self, choice: str | None, local_path: str | None, query_file: Any, gallery_files: Any,
             use_synthetic: bool, head: str | None) -> tuple[Image.Image, list[tuple[Image.Image, str]], str]:
        """Rank the gallery against the query; returns the query, the ranked gallery and a note."""
        model = self.models.get(self.model_reference(choice, local_path))
        query = _file_path(query_file)
        if use_synthetic:
            bundled = demo_logic.synthetic_gallery()
            gallery = [str(p) for p in bundled.gallery]
            query = query or str(bundled.query)
        else:
            gallery = [path for path in (_file_path(item) for item in gallery_files or ()) if path]
        if query is None:
            raise AtzooError("upload a query image (or tick 'use the bundled synthetic gallery')")
        ranked = demo_logic.rank_gallery(model, query, gallery, head)
        head_note = (f"head **{head}**" if model.num_heads > 1
                     else "a one-output model (the same feature for every scenario)")
        shown_name = (local_path or "").strip() if choice in (None, "", LOCAL_CHOICE) else str(choice)
        note = f"{len(ranked)} gallery images ranked by cosine similarity with {head_note} of `{shown_name}`."
        query_image = demo_logic.open_image(query, "the query image")
        return query_image, [(image, f"score {score:.3f}") for image, score in ranked], note

    # -- Submit ------------------------------------------------------------------------------

    def validate_entry(self, text: str | None, upload: Any) -> str:
        """Every problem of a pasted or uploaded entry, as Markdown (schema, then duplicates)."""
        source, raw = self._entry_source(text, upload)
        try:
            data = parse_json(raw, source)
        except FormatError as error:
            return f"### Not valid JSON\n\n{error}."
        problems = submission_problems(data, self.snapshot())
        if not problems:
            return (f"### Valid\n\n{source} is a valid entry and duplicates none. Submit it with "
                    "`atzoo submit` (a pull request adding it under `leaderboard/entries/`).")
        listed = "\n".join(f"- **{problem.field}**: {problem.message}"
                           + (f"  \n  *Hint: {problem.hint}*" if problem.hint else "") for problem in problems)
        return f"### {len(problems)} problem{'s' if len(problems) > 1 else ''}\n\n{listed}"

    @staticmethod
    def _entry_source(text: str | None, upload: Any) -> tuple[str, str]:
        path = _file_path(upload)
        if path:
            file = Path(path)
            if file.stat().st_size > MAX_ENTRY_BYTES:
                raise AtzooError(f"{file.name} is larger than {MAX_ENTRY_BYTES // 1024} KB; an entry is a small "
                                 f"JSON file")
            try:
                return file.name, file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise AtzooError(f"{file.name} is not a UTF-8 text file; upload the entry's .json file") from None
        if text is None or not text.strip():
            raise AtzooError("paste an entry's JSON or upload its .json file")
        if len(text) > MAX_ENTRY_BYTES:
            raise AtzooError(f"the pasted text is larger than {MAX_ENTRY_BYTES // 1024} KB; an entry is small")
        return "the pasted entry", text


def _styled(frame: pd.DataFrame, colours: MethodColours) -> Styler:
    """Scores with two decimals, blank cells for numbers the entry does not report, each method
    and each status in its colour (the plots use the same)."""
    scores = [c for c in COLUMNS if c in NUMBER_COLUMNS and c != "Rank"]
    for column in scores:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["Rank"] = frame["Rank"].astype("Int64")
    return (frame.style.format("{:.2f}", subset=scores, na_rep="").format(na_rep="", subset=["Rank"])
            .map(lambda name: f"color: {colours(name)}; font-weight: 600", subset=["Method"])
            .map(lambda status: f"color: {status_colour(status)}", subset=["Status"]))


def _leaderboard_tab(app: LeaderboardApp, blocks: gr.Blocks) -> None:
    snapshot = app.snapshot()
    with gr.Row():
        metric = gr.Radio([(METRIC_LABELS[m], m) for m in METRIC_CHOICES], value="rank1", label="Metric")
        release = gr.Radio(list(RELEASES), value=DEFAULT_RELEASE, label="Dataset release (one at a time)")
        sort_by = gr.Dropdown(list(SORT_CHOICES), value=ANY_TIME, label="Sort by")
    with gr.Row():
        search = gr.Textbox(label="Search", placeholder="method, id, backbone, submitter", elem_id="lb-search")
        families = gr.Dropdown(task_family_choices(), multiselect=True, label="Task family (all when empty)",
                               elem_id="lb-families")
        backbones = gr.Dropdown(backbone_choices(snapshot), multiselect=True, allow_custom_value=True,
                                label="Backbone (all when empty)")
    with gr.Row():
        verified_only = gr.Checkbox(label="verified only", elem_id="lb-verified")
        show_flagged = gr.Checkbox(label="show flagged / withdrawn")
        include_tricks = gr.Checkbox(label="include test-time tricks")
    summary = gr.Markdown(elem_id="lb-summary")
    frame = gr.Dataframe(headers=list(COLUMNS), interactive=False, wrap=False, max_height=640,
                         datatype=["number" if c in NUMBER_COLUMNS else "str" for c in COLUMNS],
                         column_widths=[COLUMN_WIDTHS.get(c, "84px") for c in COLUMNS],
                         pinned_columns=PINNED_COLUMNS, elem_id="lb-table")
    blocks.load(lambda: gr.update(choices=backbone_choices(app.snapshot())), None, backbones,
                api_visibility="private")
    csv_button = gr.DownloadButton("Download CSV of this table", size="sm", elem_id="lb-csv")
    inputs = [metric, release, verified_only, families, backbones, show_flagged, include_tricks, search, sort_by]
    triggers = [blocks.load, metric.change, release.change, verified_only.change, families.change, backbones.change,
                show_flagged.change, include_tricks.change, sort_by.change, search.submit]
    gr.on(triggers, shown_in_page(app.leaderboard), inputs, [frame, summary], api_name="leaderboard")
    gr.on(triggers, shown_in_page(app.csv), inputs, csv_button, api_name="csv")
    with gr.Accordion("Entry detail (select a row, or open the page with ?entry=ID)", open=False,
                      elem_id="lb-detail-panel") as panel:
        entry_id = gr.Textbox(label="Entry id", elem_id="lb-detail-id", max_lines=1)
        detail = gr.Markdown(elem_id="lb-detail")
    frame.select(shown_in_page(app.detail_from_row), None, [detail, panel], api_visibility="private")
    blocks.load(app.detail_from_url, None, [detail, panel], api_visibility="private")
    entry_id.submit(shown_in_page(app.detail), entry_id, detail, api_name="entry_detail")
    with gr.Accordion("Runner queue (verification and training jobs)", open=False):
        queue = gr.Dataframe(interactive=False)
        refresh = gr.Button("Refresh queue", size="sm")
    gr.on([blocks.load, refresh.click], shown_in_page(app.queue), None, queue, api_name="queue")


def _compare_tab(app: LeaderboardApp, blocks: gr.Blocks) -> None:
    with gr.Row():
        release = gr.Radio(list(RELEASES), value=DEFAULT_RELEASE, label="Dataset release (one at a time)", scale=1,
                           elem_id="cmp-release")
        entries = gr.Dropdown(entry_choices(app.snapshot(), DEFAULT_RELEASE), value=app.default_compare(),
                              multiselect=True, allow_custom_value=True, label="Entries to compare", scale=4,
                              elem_id="cmp-entries")
        metric = gr.Radio([(METRIC_LABELS[m], m) for m in METRIC_CHOICES], value="rank1", label="Metric", scale=1)
    with gr.Row():
        radar = gr.Plot(label="Six scenarios", show_label=False, elem_id="cmp-radar")
        gap = gr.Plot(label="Short- vs long-term and day vs night gaps", show_label=False, elem_id="cmp-gap")
    with gr.Row():
        verified = gr.Plot(label="Reported vs verified", show_label=False, elem_id="cmp-verified")
        params = gr.Plot(label="Any-Time vs parameters", show_label=False, elem_id="cmp-params")
    blocks.load(lambda: gr.update(choices=entry_choices(app.snapshot(), DEFAULT_RELEASE)), None, entries,
                api_visibility="private")
    release.change(shown_in_page(app.compare_release), release, entries, api_visibility="private")
    gr.on([blocks.load, entries.change, metric.change], shown_in_page(app.compare), [entries, metric, release],
          [radar, gap, verified, params], api_name="compare")


def _demo_tab(app: LeaderboardApp) -> None:
    gr.Markdown("Rank gallery images against a query with a zoo model or a local package / run directory. "
                "Only your uploads or the bundled **synthetic** gallery are used; never AT-USTC images.")
    choices = app.model_choices()
    with gr.Row():
        with gr.Column():
            model = gr.Dropdown(choices, value=choices[0] if choices else None, label="Model", elem_id="demo-model")
            local_path = gr.Textbox(label="Local model package or run directory", placeholder="/path/to/package",
                                    visible=app.allow_local_paths)
            head = gr.Dropdown(list(SCENARIO_NAMES), value=SCENARIO_NAMES[0], label="Scenario head",
                               info="one-output models use their single feature for every scenario")
            query = gr.File(label="Query image", file_types=["image"], height=130, elem_id="demo-query")
            gallery_files = gr.File(label="Gallery images", file_count="multiple", file_types=["image"],
                                    height=130, elem_id="demo-gallery-files")
            synthetic = gr.Checkbox(value=True, label="use the bundled synthetic gallery", elem_id="demo-synthetic")
            run = gr.Button("Rank the gallery", variant="primary", elem_id="demo-run")
        with gr.Column(scale=2):
            query_view = gr.Image(label="Query", interactive=False, height=200)
            note = gr.Markdown(elem_id="demo-note")
            ranked = gr.Gallery(label="Ranked gallery", columns=6, height="auto", elem_id="demo-gallery")
    clear = run.click(lambda: (None, None, ""), None, [query_view, ranked, note], queue=False,
                      api_visibility="private")
    clear.then(shown_in_page(app.demo), [model, local_path, query, gallery_files, synthetic, head],
               [query_view, ranked, note], api_name="demo")


def _submit_tab(app: LeaderboardApp) -> None:
    gr.Markdown("Paste an entry or upload its `.json` file to see every problem the registry would reject "
                "it for (schema, metric ranges, all six scenarios, duplicates). Weights and dataset checks "
                "run in `atzoo submit` and `atzoo leaderboard verify`.")
    with gr.Row():
        text = gr.Textbox(label="Entry JSON", lines=14, max_lines=30, placeholder='{"schema_version": 1, ...}',
                          elem_id="submit-text")
        upload = gr.File(label="or upload ENTRY.json", file_types=[".json"], elem_id="submit-file")
    check = gr.Button("Validate", variant="primary", elem_id="submit-run")
    result = gr.Markdown(elem_id="submit-result")
    check.click(shown_in_page(app.validate_entry), [text, upload], result, api_name="validate_entry")


def build_app(leaderboard_dir: str | os.PathLike, *, runner_dir: str | os.PathLike | None = None,
              demo_models: Mapping[str, str] | Sequence[str] | None = None, registry: Registry | None = None,
              allow_local_paths: bool = False, source: str | None = None) -> gr.Blocks:
    """The leaderboard app over the registry at `leaderboard_dir` (its ``entries/`` folder).

    `runner_dir`: a verification runner's folder whose queue the Leaderboard tab shows.
    `demo_models`: extra models offered on the Demo tab, label -> package or run directory.
    `allow_local_paths`: let the Demo tab load any package or run folder on the server by path.
    `source`: serve the board from a board dataset (a folder, or ``ORG/NAME@REVISION`` on the Hub) made by
    ``atzoo leaderboard export-dataset`` instead of the registry folder.
    """
    app = LeaderboardApp(leaderboard_dir, runner_dir=runner_dir, demo_models=demo_models, registry=registry,
                         allow_local_paths=allow_local_paths, source=source)
    with gr.Blocks(title="atzoo leaderboard: anytime person re-identification", fill_width=True,
                   delete_cache=DELETE_CACHE) as blocks:
        gr.Markdown("# atzoo leaderboard\nAnytime person re-identification on AT-USTC: six scenarios, "
                    "Any-Time = their mean. Reported numbers, verified numbers and disclosures side by side.")
        with gr.Tabs():
            with gr.Tab("Leaderboard", id="leaderboard"):
                _leaderboard_tab(app, blocks)
            with gr.Tab("Compare", id="compare"):
                _compare_tab(app, blocks)
            with gr.Tab("Generalization", id="generalization"):
                generalization_tab(app.snapshot, blocks, RELEASES, shown_in_page)
            with gr.Tab("Demo", id="demo"):
                _demo_tab(app)
            with gr.Tab("Submit", id="submit"):
                _submit_tab(app)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)
        blocks.unload(app.files.end_session)
    blocks.atzoo_app = app
    _close_with(blocks, app.files.close)
    return blocks


def _close_with(blocks: gr.Blocks, cleanup: Callable[[], None]) -> None:
    """Make `blocks.close()` also delete the app's session files."""
    close = blocks.close

    def close_and_clean(*args, **kwargs):
        try:
            return close(*args, **kwargs)
        finally:
            cleanup()

    blocks.close = close_and_clean  # type: ignore[method-assign]


def serve(leaderboard_dir: str | os.PathLike, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
          *, runner_dir: str | os.PathLike | None = None, demo_models: Mapping[str, str] | None = None,
          allow_local_paths: bool | None = None, source: str | None = None, **launch_kwargs: Any) -> gr.Blocks:
    """Build the app and serve it (blocking unless ``prevent_thread_lock=True``); returns the Blocks.

    Local model paths on the Demo tab are allowed by default only when the app is private (served on
    the loopback interface without a share link)."""
    if allow_local_paths is None:
        allow_local_paths = host in ("127.0.0.1", "localhost", "::1") and not share
    blocks = build_app(leaderboard_dir, runner_dir=runner_dir, demo_models=demo_models,
                       allow_local_paths=allow_local_paths, source=source)
    launch_kwargs.setdefault("max_file_size", MAX_UPLOAD)
    launch_kwargs["css"] = APP_CSS + launch_kwargs.get("css", "")
    launch_kwargs.setdefault("show_error", True)
    blocks.queue(default_concurrency_limit=4)
    blocks.launch(server_name=host, server_port=port, share=share, **launch_kwargs)
    return blocks
