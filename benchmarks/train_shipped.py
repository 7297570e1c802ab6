"""Train a pretrained model shipped with instatrack, by its recipe, and install it.

    python benchmarks/train_shipped.py nuclei-se                  # train runs/shipped/nuclei-se
    python benchmarks/train_shipped.py nuclei-se --install runs/shipped/nuclei-se

Training builds the recipe's data mix: randomised synthetic sequences (made once
by ``instatrack synth --randomise``, kept under ``--work``) plus the real
datasets of the recipe found under ``--data-root`` (``../shared/data`` or
``$INSTATRACK_DATA``); a real dataset that is absent is skipped with a notice,
and the run records what it was trained on. Running the command again continues
an interrupted run from its checkpoint. ``--install RUN`` copies the finished run
into ``src/instatrack/pretrained/NAME/`` (config, best weights, ``model.json``,
``MODEL_CARD.md`` with the run's validation score filled in); ``--score`` adds
test scores, ``--set`` post-processing values chosen on validation frames.

Real frames used: 0-29 train, 30-35 validate (best weights) for the nuclei models,
plants 0-49 train, 50-55 validate for leaves-se; the later frames (plants) are never
seen and remain the test frames of docs/results.md. See docs/models.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("INSTATRACK_DATA", REPO.parent / "shared" / "data"))
PRETRAINED = REPO / "src" / "instatrack" / "pretrained"

SYNTH_TERMS = ("synthetic sequences made by `instatrack synth --randomise` (BSD-3-Clause code): "
               "no data terms")
CTC_TERMS = ("Cell Tracking Challenge training data (celltrackingchallenge.net): cite Ulman et "
             "al., Nat. Methods 2017 (doi:10.1038/nmeth.4473) and acknowledge the CTC; public "
             "non-CTC scientific use needs the data provider's permission, commercial use the "
             "explicit permission of the organisers and data providers")
CVPPP_TERMS = ("CVPPP 2017 Leaf Segmentation Challenge A1 (Plant Phenotyping Datasets, "
               "plant-phenotyping.org/datasets-terms-and-conditions): copyright stays with the "
               "dataset owners (Minervini, Scharr, Tsaftaris); academic use for developing and "
               "evaluating algorithms only, NO commercial use; cite Minervini et al., Pattern "
               "Recognition Letters 2016 and Scharr et al., Machine Vision and Applications 2016; "
               "the data and annotations themselves may not be redistributed (they are not in "
               "this package)")


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """``instatrack synth DIR [--randomise] --sequences N --frames F --size H W --seed S``:
    randomised looks, or (``randomise=False``) the look of the demo's sequences;
    ``kind="video"``: DAVIS-layout colour videos (``--kind video``), drawn with the
    ``video`` changes of :class:`~instatrack.data.synth_video.VideoSettings`
    (``--video-set``)."""

    sequences: int = 24
    frames: int = 4
    size: tuple[int, int] = (320, 320)
    seed: int = 16
    randomise: bool = True
    kind: str = "cells"
    video: tuple[str, ...] = ()
    #: cells: where a nucleus's ground truth ends (``instatrack synth --outline``)
    outline: str = "object"
    #: randomised cells: "NAME=LOW,HIGH" ranges drawn instead of the defaults (``--range``)
    ranges: tuple[str, ...] = ()

    @property
    def folder_name(self) -> str:
        kind = "synthetic" if self.randomise else "synthetic-demo"
        kind = "synthetic-video" if self.kind == "video" else kind
        changed = "".join(f"-{item.replace('=', '').replace(',', '-')}"
                          for item in (*self.video, *self.ranges))
        changed += "" if self.outline == "object" else f"-{self.outline}"
        return f"{kind}-{self.sequences}x{self.frames}-{self.size[0]}x{self.size[1]}-" \
               f"seed{self.seed}{changed}"

    @property
    def command(self) -> str:
        flag = " --kind video" if self.kind == "video" else \
            " --randomise" if self.randomise else ""
        return (f"instatrack synth DIR{flag} --sequences "
                f"{self.sequences} --frames {self.frames} --size {self.size[0]} {self.size[1]} "
                f"--seed {self.seed}" + "".join(f" --video-set {item}" for item in self.video)
                + ("" if self.outline == "object" else f" --outline {self.outline}")
                + "".join(f" --range {item}" for item in self.ranges))


@dataclasses.dataclass(frozen=True)
class Recipe:
    method: str
    purpose: str
    synthetic: tuple[Synthetic, ...]
    #: (dataset folder under the data root, sequence) of the real training data
    real: tuple[tuple[str, str], ...]
    #: which frames train and which validate, in words (for the card)
    split: str
    preset: str = "fast"
    overrides: tuple[str, ...] = ()
    limits: str = ""
    #: the terms that the real training data carries into the weights
    terms: str = CTC_TERMS
    #: share of the training clips drawn from the synthetic folders (the real folders
    #: share the rest alike: ``data_weights``); None: every clip alike
    synthetic_share: float | None = None


NUCLEI_LIMITS = (
    "2D fluorescence of nuclei or compact cells (bright objects on a dark background). "
    "Trained at a median object diameter recorded in config.json (`instatrack models` shows "
    "it); far larger or smaller objects need `--object-size PIXELS|auto`. Not for phase "
    "contrast, brightfield, spread or elongated cells (MSC-like) or 3D stacks. A per-frame "
    "method: tracking links instances by overlap, divisions by the tracker's rules.")

LEAVES_LIMITS = (
    "Top-view RGB photographs of single rosette plants (Arabidopsis, as in CVPPP A1: "
    "530x500 px, leaves about 15-90 px across, median 48 px, on soil in a pot). Trained on "
    "50 plants of one lab's set-up, so other species, cameras, backgrounds, side views, trays "
    "of many plants or much larger/smaller leaves (try `--object-size`) are untested. Errors "
    "are mostly counting ones: objects under 200 px are dropped (5% of the training leaves "
    "are that small: the youngest, in the centre), and some leaves come split in two (more "
    "leaves found than there are, on average). Still images; a time-lapse is linked by "
    "overlap only. Non-commercial use only (the CVPPP terms, above).")

#: spread cells with arms and lobes (MSC-like, ``instatrack synth --range arms=1,4``),
#: sparse and large, added by ``--spread-cells`` (a measurement run). Session 27: added to
#: nuclei-ch's data, against a control run it helped on MSC and cost GOWT1 (docs/results.md)
SPREAD_CELLS = Synthetic(sequences=16, frames=12, size=(256, 256), seed=23, ranges=(
    "arms=1,4", "arm_length=0.8,3", "radius=10,32", "coverage=0.05,0.2", "aspect_max=1.3,3"))
#: ``--spread-cells msc`` (session 43): closer to MSC than the lobed cells above: long,
#: thin tapering arms, large flat bodies with little texture, and the light MSC has
#: without ground truth (out-of-focus cells of another plane, bright debris specks)
SPREAD_CELLS_MSC = Synthetic(sequences=16, frames=12, size=(256, 256), seed=24, ranges=(
    "arms=1,4", "arm_length=1.5,5", "arm_width=0.06,0.3", "radius=12,40",
    "coverage=0.03,0.15", "aspect_max=1.3,3", "texture=0,0.08", "ghosts=0.3,1.5",
    "specks=0.05,0.3"))
SPREAD_LOOKS = {"lobes": SPREAD_CELLS, "msc": SPREAD_CELLS_MSC}
#: session 47: ghosts at 0.03-0.1 of a cell's light instead of 0.12-0.4 (``ghost_light``):
#: brighter ones taught the network that a dim cell is no object (it lost GOWT1's faint
#: nuclei), none left MSC's flat background patches as objects. ``nuclei-ch``'s look since
#: session 48 (docs/results.md)
DIM_GHOSTS = "ghost_light=0.1,0.1"

RECIPES: dict[str, Recipe] = {
    # the synthetic frames train; frames 0-29 of each real sequence train and 30-35
    # validate (the best weights are chosen there), so its test frames stay unseen
    "nuclei-se": Recipe(
        method="spatial-embedding",
        purpose="fluorescent nuclei and cells in 2D images and time-lapses",
        synthetic=(Synthetic(),),
        real=(("Fluo-N2DH-SIM+", "01"), ("Fluo-N2DH-GOWT1", "01")),
        split="every synthetic frame and frames 0-29 of the real sequences train; frames "
              "30-35 of the real sequences validate (the best weights are kept); later real "
              "frames were never seen (the test frames of docs/results.md)",
        # the recipe mixes its own synthetic folder in (synthetic_share below), not the
        # method's default share of training_sequences
        overrides=("train_frames=:30", "val_frames=30:36", "crop_object_bias=0.7",
                   "aug_object_dim_p=0.5", "steps=3000", "synthetic_share=0"),
        limits=NUCLEI_LIMITS,
        # session 12: 5 % of the clips synthetic (it had been 76 %, every clip alike; 0 and
        # 15 % measured too), chosen by leave-one-dataset-out and dimmed frames
        # (docs/results.md, "Session 12")
        synthetic_share=0.05),
    # the tracker: clips of 4 frames, so the synthetic sequences are movies (the demo's look
    # and randomised looks, with divisions); the real frames 0-29 train, 30-35 validate.
    # Every sequence is resized so its nuclei are 28 px across (object_size): the first
    # run (session 7), which mixed 8-65 px objects as they came, scored validation SEG
    # 0.17 / 0.16 / 0.13 after 500 / 1000 / 1500 steps, ~200 fragments per SIM+ frame;
    # at one size 0.64 / 0.70 / 0.69 ... 0.77 at 5000 (session 8, shipped).
    # cluster_background_cos=0.15 at install: the best of 0.15 / 0.3 / 0.5 on the
    # validation frames of both real sequences
    "nuclei-ch": Recipe(
        method="cosine-hourglass",
        purpose="segmenting and tracking fluorescent nuclei and cells in 2D time-lapses",
        # session 48: with MSC-like spread cells and their faint clutter (SPREAD_CELLS_MSC,
        # DIM_GHOSTS on every randomised look; sessions 43-47), trained from scratch: the
        # seed the validation frames preferred of two (docs/results.md, "Session 48")
        synthetic=(Synthetic(sequences=8, frames=24, size=(128, 128), seed=21, randomise=False),
                   Synthetic(sequences=16, frames=12, size=(192, 192), seed=22,
                             ranges=(DIM_GHOSTS,)),
                   dataclasses.replace(SPREAD_CELLS_MSC,
                                       ranges=(*SPREAD_CELLS_MSC.ranges, DIM_GHOSTS))),
        real=(("Fluo-N2DH-SIM+", "01"), ("Fluo-N2DH-GOWT1", "01")),
        split="every synthetic frame and frames 0-29 of the real sequences train; frames "
              "30-35 of the real sequences validate (the best weights are kept); later real "
              "frames were never seen (the test frames of docs/results.md)",
        overrides=("train_frames=:30", "val_frames=30:36", "crop_object_bias=0.7",
                   "object_size=28", "steps=5000", "val_every=500", "seed=1"),
        limits=NUCLEI_LIMITS.replace(
            "Trained at a median object diameter recorded in config.json (`instatrack models` "
            "shows it); far larger or smaller objects need `--object-size PIXELS|auto`.",
            "Every training dataset was resized to nuclei of 28 px, so new frames are resized "
            "by an estimate of their objects' size (`--object-size auto`, the default for this "
            "model); state the diameter with `--object-size PIXELS` when you know it (the "
            "estimate can be 20 % off).").replace(
            "A per-frame method: tracking links instances by overlap, divisions by the "
            "tracker's rules.",
            "Embeddings of consecutive frames are clustered together, so instances come "
            "matched across each frame pair. Its masks are looser than `nuclei-se`'s (SEG "
            "below it on SIM+ and GOWT1); its strength is tracking. Runs at half size on "
            "SIM+/GOWT1-like data, so it is fast.").replace(
            "Not for phase contrast, brightfield, spread or elongated cells (MSC-like) or 3D "
            "stacks.",
            "Not for phase contrast, brightfield or 3D stacks. Spread, elongated cells "
            "(MSC-like) are in its synthetic training data but no real ones: on MSC, which it "
            "never saw, calibrate it on a few annotated frames of yours first (`instatrack "
            "calibrate`). Calibrated on six MSC frames it matches a classical pipeline tuned "
            "on the same frames in SEG and trails it by about 0.04 in TRA, because it reports "
            "out-of-focus cells that MSC does not annotate as objects (docs/results.md, "
            "session 54).")),
    # plants 0-49 of the CVPPP A1 folder here train, 50-55 validate (best weights); 56-65
    # stay the test plants of docs/results.md. 200 px drops the fragments (chosen there on
    # validation plants; the training validation uses it too)
    "leaves-se": Recipe(
        method="spatial-embedding",
        purpose="leaves of rosette plants in top-view RGB images (CVPPP-style)",
        synthetic=(),
        real=(("CVPPP2017_LSC_A1", "A1"),),
        split="plants 0-49 (file order) of the 66 A1 plants here train; plants 50-55 validate "
              "(the best weights are kept); plants 56-65 were never seen (the test plants of "
              "docs/results.md)",
        overrides=("train_frames=:50", "val_frames=50:56", "min_instance_area=200",
                   "seed_threshold=0.5", "steps=6000"),
        limits=LEAVES_LIMITS,
        terms=CVPPP_TERMS),
    # the same synthetic data alone: frames 0-2 of each sequence train, frame 3 validates
    "nuclei-se-synthetic": Recipe(
        method="spatial-embedding",
        purpose="fluorescent nuclei, trained on synthetic data only (no data terms)",
        synthetic=(Synthetic(),),
        real=(),
        split="frames 0-2 of each synthetic sequence train, frame 3 validates",
        overrides=("train_frames=:3", "val_frames=3:4", "crop_object_bias=0.7", "steps=6000",
                   "synthetic_share=0"),
        limits=NUCLEI_LIMITS + " Never saw a real image: see its scores on real data."),
    # the parent network of spatial propagation, from synthetic videos only: frames 0-6 of
    # each video train, the propagation of frames 7-9 validates (docs/propagation_pretraining.md)
    "objects-spn": Recipe(
        method="spatial-propagation",
        purpose="following objects in colour videos from their first-frame masks, trained "
                "on synthetic videos only (no data terms)",
        synthetic=(Synthetic(sequences=60, frames=10, size=(240, 432), seed=31,
                             randomise=False, kind="video"),),
        real=(),
        split="frames 0-6 of each synthetic video train, frames 7-9 validate (propagated "
              "from frame 7's masks)",
        overrides=("train_frames=:7", "val_frames=7:10", "val_every=500", "fg_width=16",
                   "fg_levels=4", "spn_width=16", "crop=96,96", "steps=4000"),
        limits="Colour videos (RGB); semi-supervised: the first frame's masks are needed. "
               "Never saw a real image: the foreground net knows synthetic objects only. "
               "The per-object heads, fitted to frame 0 (on copies with the objects moved "
               "against the background: finetune_dream), find each object in frame 1 and "
               "again once lost; in between, each mask is carried along the optical flow "
               "(flow_prior) and its outline drawn to the image's colour edges by a dense "
               "CRF (crf). The carried mask drifts over long videos (DAVIS motocross-jump "
               "J&F 0.503: the mask keeps 0.9 of the rider's IoU at frame 1, 0.4-0.65 "
               "over frames 10-30, and in the last frames spreads over the trees beside him, "
               "which the flow drags along); where an untextured region scores like the "
               "object, the CRF can spread the mask over it. On synthetic videos whose "
               "optical flow is easy, the first masks carried by the flow and the CRF "
               "alone (nothing learned) do better (0.968 against 0.946); on faster, "
               "photo-textured and real ones, and on synthetic ones as hard for the flow as "
               "a real clip (0.688 against 0.607), the learned heads win (DAVIS: 0.503 "
               "against 0.438 for the flow alone). DAVIS J&F moves by about 0.02 with the draw "
               "of the heads' fitting (0.468-0.519 over finetune_seed 0-9, mean 0.495; set "
               "finetune_seed at track to see how much a video of yours depends on it; "
               "finetune_draws=3 follows the video with three draws and votes, at three "
               "times the time: DAVIS mean 0.500)."),
}
# the same, the foreground net conditioned on the object's previous mask
RECIPES["objects-spn-mask"] = dataclasses.replace(
    RECIPES["objects-spn"],
    purpose=RECIPES["objects-spn"].purpose + "; the net reads the object's previous mask "
            "(MaskTrack conditioning, docs/propagation_pretraining.md)",
    overrides=(*RECIPES["objects-spn"].overrides, "previous_mask=true"))
# and trained on approaching and receding objects (up to +-10 % size a frame, 0.3-3x)
RECIPES["objects-spn-zoom"] = dataclasses.replace(
    RECIPES["objects-spn-mask"],
    synthetic=(Synthetic(sequences=60, frames=10, size=(240, 432), seed=31, randomise=False,
                         kind="video", video=("zoom=0.1", "scale_range=0.3,3")),))
# a foreground net twice as wide (session 35: not shown better; docs/propagation_pretraining.md)
RECIPES["objects-spn-w32"] = dataclasses.replace(
    RECIPES["objects-spn"],
    purpose=RECIPES["objects-spn"].purpose + "; its foreground net twice as wide",
    overrides=tuple(o if o != "fg_width=16" else "fg_width=32"
                    for o in RECIPES["objects-spn"].overrides))
# real textures: half the backgrounds and object textures cut from photographs
# (VideoSettings.photos; scikit-image's CC0 / public-domain sample photographs)
_PHOTO_VIDEOS = (Synthetic(sequences=60, frames=10, size=(240, 432), seed=31, randomise=False,
                           kind="video", video=("photos=0.5",)),)
RECIPES["objects-spn-photo"] = dataclasses.replace(
    RECIPES["objects-spn"], synthetic=_PHOTO_VIDEOS,
    purpose=RECIPES["objects-spn"].purpose + "; half its textures cut from photographs")
RECIPES["objects-spn-mask-photo"] = dataclasses.replace(
    RECIPES["objects-spn-mask"], synthetic=_PHOTO_VIDEOS,
    purpose=RECIPES["objects-spn-mask"].purpose + "; half its textures cut from photographs")

# motion the optical flow follows badly: swinging parts, smeared objects, flat colours
# (VideoSettings.articulation, motion_blur, flat; milder than the held-out set
# runs/spn-heldout-hard that judges it, docs/propagation_pretraining.md, session 39)
RECIPES["objects-spn-hard"] = dataclasses.replace(
    RECIPES["objects-spn"],
    synthetic=(Synthetic(sequences=60, frames=10, size=(240, 432), seed=31, randomise=False,
                         kind="video",
                         video=("articulation=0.6", "motion_blur=1", "flat=0.3")),),
    purpose=RECIPES["objects-spn"].purpose + "; its videos have swinging parts, motion "
            "blur and flat colours")


# three times the videos (180, the first 60 those of objects-spn), the steps unchanged:
# more objects and backgrounds, each seen less often (session 41, measured, not shipped)
RECIPES["objects-spn-more"] = dataclasses.replace(
    RECIPES["objects-spn"],
    synthetic=(dataclasses.replace(RECIPES["objects-spn"].synthetic[0], sequences=180),),
    purpose=RECIPES["objects-spn"].purpose + "; three times the training videos")


def build_data(recipe: Recipe, work: Path, data_root: Path) -> list[Path]:
    """The dataset folders of the recipe: real ones found (first, so they validate), then
    the synthetic one (written into ``work`` unless already there)."""
    from instatrack.data.output import Outputs
    from instatrack.data.synth_random import RECORD, parse_ranges, write_ctc_sequences

    folders = []
    for dataset, sequence in recipe.real:
        path = data_root / dataset / sequence
        if path.is_dir():
            folders.append(path)
        else:
            print(f"train_shipped: skipping {dataset} {sequence}: not found under {data_root}",
                  file=sys.stderr)
    for synth in recipe.synthetic:
        folder = work / synth.folder_name
        if not (folder / RECORD).is_file():
            with Outputs(overwrite=True) as outputs:
                if synth.kind == "video":
                    from instatrack.data.synth_video import VideoSettings, write_davis_videos
                    from instatrack.settings import parse_overrides

                    settings = VideoSettings.from_dict(parse_overrides(synth.video))
                    write_davis_videos(outputs.folder(folder), videos=synth.sequences,
                                       frames=synth.frames, size=synth.size, seed=synth.seed,
                                       settings=settings)
                else:
                    write_ctc_sequences(outputs.folder(folder), sequences=synth.sequences,
                                        frames=synth.frames, size=synth.size, seed=synth.seed,
                                        randomise=synth.randomise, outline=synth.outline,
                                        ranges=parse_ranges(synth.ranges))
        folders.append(folder)
    return folders


def train_recipe(name: str, recipe: Recipe, out: Path, work: Path, data_root: Path,
                 steps: int | None = None, quiet: bool = False, init: str | None = None) -> Path:
    """Train (or continue) the run ``out`` of the recipe, from scratch or fine-tuned from
    ``init`` (a shipped model or run, with the recipe's config); returns the run folder."""
    from instatrack.methods import get_method
    from instatrack.train import train_or_resume

    data = build_data(recipe, work, data_root)
    shares = share_weights(recipe, data)
    config = get_method(recipe.method).config_cls.build(
        recipe.preset, overrides=[*recipe.overrides, *shares])
    # with shares, training measures the size over the clips it draws (weighted)
    if max(config.instance_area) <= 0 and config.object_size == 0 and not shares:
        config = config.replace(instance_area=sequence_object_areas(data, config.train_frames))
    return train_or_resume(recipe.method, data, out, config=config, steps=steps,
                           progress=not quiet, init=init)


def share_weights(recipe: Recipe, data: list[Path]) -> list[str]:
    """The ``data_weights`` override that gives the synthetic folders of ``data`` (the
    recipe's, which :func:`build_data` puts last) ``recipe.synthetic_share`` of the
    clips; none without a share or without both kinds of folder."""
    share = recipe.synthetic_share
    n_synth = min(len(recipe.synthetic), len(data))
    n_real = len(data) - n_synth
    if share is None or n_synth == 0 or n_real == 0:
        return []
    weights = [(1 - share) / n_real] * n_real + [share / n_synth] * n_synth
    return ["data_weights=" + ",".join(f"{w:.6g}" for w in weights)]


def sequence_object_areas(data: list[Path], frames: str) -> tuple[float, float]:
    """(10th percentile, median) object area of a mix, each sequence counting once.

    Training measures them over all objects, so one synthetic sequence of many
    small nuclei would outvote the rest; the model's training object size
    (``--object-size``) should be the middle of the sequences' sizes instead.
    """
    import numpy as np

    from instatrack.config import parse_slice
    from instatrack.data import open_datasets

    lows, medians = [], []
    for seq in open_datasets(data):
        counts = [np.bincount(labels[labels > 0].ravel()) for t in
                  list(range(len(seq)))[parse_slice(frames) or slice(None)]
                  if (labels := seq.labels(t)) is not None]
        areas = np.concatenate([c[c > 0] for c in counts]) if counts else np.zeros(0)
        if len(areas):
            lows.append(np.percentile(areas, 10))
            medians.append(np.median(areas))
    if not medians:
        return (0.0, 0.0)
    return (round(float(np.median(lows)), 1), round(float(np.median(medians)), 1))


def install(name: str, recipe: Recipe, run_dir: Path, dest: Path, scores: dict[str, float],
            post_processing: list[str]):
    """Write ``dest/name`` from the finished run: config, best weights, model.json, card."""
    from instatrack import pretrained
    from instatrack.runs import LAST, LOG, LogWriter, Run

    run = Run.open(run_dir)
    if not run.file(LAST).is_file():
        raise SystemExit(f"{run_dir}: not finished (no {LAST}); run the training first")
    if run.method != recipe.method:
        raise SystemExit(f"{run_dir}: trained with {run.method}, the recipe uses {recipe.method}")
    rows = LogWriter(run.file(LOG), resume_step=10**9).rows
    validation = [r["val_seg"] for r in rows if "val_seg" in r]
    scores = {**({"validation SEG": max(validation)} if validation else {}), **scores}
    # a measurement run may have skipped its calibration (``calibrate=false``, the
    # post-processing then chosen by ``instatrack calibrate`` and given here); a fine-tune
    # from the shipped model (``train --init``) calibrates as any training
    run.config = run.config.with_post_processing(post_processing).replace(calibrate=True)
    data = _training_data(run.data, recipe)
    real = [d for d in data if not d.startswith("synthetic")]
    terms = "; ".join(([SYNTH_TERMS] if recipe.synthetic else [])
                      + ([recipe.terms] if real else []))
    card = model_card(name, recipe, run, data, terms, scores, post_processing)
    return pretrained.write_model(run, dest / name, purpose=recipe.purpose, scores=scores,
                                  training_data=data, terms=terms, card=card)


def _training_data(data, recipe: Recipe) -> list[str]:
    """What the run was trained on, named without the paths of the machine."""
    folders = [data] if isinstance(data, str) else list(data or [])
    names = []
    for folder in map(Path, folders):
        synth = [s for s in recipe.synthetic if s.folder_name == folder.name]
        if synth:
            names.append(f"synthetic: {synth[0].command}")
        else:
            names.append(f"{folder.parent.name} {folder.name}")
    return names


def precision_text(config) -> str:
    """How the card states numerical precision: training's follows the machine unless set."""
    from instatrack.methods.base import InferencePrecision

    where = ("where the machine has the kernels (a GPU, or a CPU with AVX-512 BF16 or AMX) "
             "and in float32 elsewhere, so a retraining on another machine gives other "
             "weights" if config.cpu_amp else "on a GPU and in float32 on a CPU")
    return (f"precision: training runs under bfloat16 autocast {where} (`--set amp=false` "
            "trains in float32 everywhere); inference runs in float32"
            + (" unless `--set infer_bfloat16=true` (docs/benchmarks.md)"
               if isinstance(config, InferencePrecision) else ""))


def model_card(name: str, recipe: Recipe, run, data: list[str], terms: str,
               scores: dict[str, float], post_processing: list[str]) -> str:
    config = run.config
    area = config.instance_area[1]
    size = 2 * (area / 3.141592653589793) ** 0.5
    lines = [
        f"# {name}", "",
        f"{recipe.purpose}. Method: `{recipe.method}` (`{recipe.preset}` preset).", "",
        "## Training data", "", *[f"- {d}" for d in data], "",
        f"Terms: {terms}.", "",
        f"Frames: {recipe.split}.", "",
        "## Recipe", "",
        f"- preset `{recipe.preset}`, `--set` {', '.join(f'`{o}`' for o in recipe.overrides)}",
        *([f"- {recipe.synthetic_share:.0%} of the training clips from the synthetic "
           f"data, the rest from the real folders alike (`data_weights` "
           f"{', '.join(f'{w:g}' for w in config.data_weights)})"]
          if recipe.synthetic_share is not None and config.data_weights else []),
        f"- post-processing: {post_processing_text(config, post_processing)}",
        f"- {config.steps} steps, batch {config.batch_size}, crops {config.crop[0]}x"
        f"{config.crop[1]}, seed {config.seed}; training objects: median diameter "
        f"{size:.0f} px",
        f"- {precision_text(config)}", "",
        "Reproduce (the real data under ../shared/data or $INSTATRACK_DATA):", "",
        "```bash",
        f"python benchmarks/train_shipped.py {name} --out runs/shipped/{name}",
        f"python benchmarks/train_shipped.py {name} --install runs/shipped/{name}",
        "```", "",
        "## Scores", "",
        "| measure | value |", "| --- | --- |",
        *[f"| {k} | {v:.3f} |" for k, v in scores.items()], "",
        "Test scores: docs/results.md (frames and datasets this model never saw).", "",
        "## Intended use and known limits", "", recipe.limits, "",
    ]
    return "\n".join(lines)


def post_processing_text(config, post_processing: list[str]) -> str:
    """The card's words for where the post-processing values came from."""
    from instatrack.calibrate import calibrated_values

    if post_processing:
        return f"{', '.join(post_processing)} (set at install)"
    calibrated = ", ".join(f"`{k}={v}`" for k, v in calibrated_values(config).items())
    return f"as calibrated on the validation frames when training ended: {calibrated}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES), help="the model to train or install")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/shipped/NAME, with "
                        "--leave-out runs/shipped/NAME-without-DATASET)")
    parser.add_argument("--work", type=Path, default=Path("runs/shipped/data"),
                        help="folder for the synthetic training data")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--steps", type=int, help="change the recipe's number of steps")
    parser.add_argument("--leave-out", action="append", default=[], metavar="DATASET",
                        help="train without this real dataset of the recipe (leave-one-"
                             "dataset-out: score the run on it); repeatable")
    parser.add_argument("--outline", choices=("object", "visible"),
                        help="change the ground truth of the recipe's synthetic nuclei "
                             "(instatrack synth --outline)")
    parser.add_argument("--synth-range", action="append", default=[], metavar="NAME=LOW,HIGH",
                        help="draw the recipe's randomised synthetic NAME from LOW..HIGH "
                             "(instatrack synth --range; repeatable)")
    parser.add_argument("--synthetic-share", type=float, metavar="F",
                        help="draw this share of the training clips from the synthetic "
                             "folders (measurement runs; default: the recipe's)")
    parser.add_argument("--spread-cells", nargs="?", const="lobes", choices=SPREAD_LOOKS,
                        help="add synthetic spread cells to the recipe's synthetic data (a "
                             "measurement run): 'lobes' (the default; SPREAD_CELLS, session 27) "
                             "or 'msc' (SPREAD_CELLS_MSC: thin arms, out-of-focus cells and "
                             "specks without ground truth)")
    parser.add_argument("--init", metavar="MODEL",
                        help="fine-tune from this shipped model or run on the recipe's data "
                             "and frame split instead of training from scratch (a "
                             "measurement run)")
    parser.add_argument("--without-synthetic", action="store_true",
                        help="train on the recipe's real data alone (a measurement run)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--install", type=Path, metavar="RUN",
                        help="copy the finished RUN into the package as NAME")
    parser.add_argument("--dest", type=Path, default=PRETRAINED,
                        help="where --install writes (default: src/instatrack/pretrained)")
    parser.add_argument("--score", action="append", default=[], metavar="MEASURE=VALUE",
                        help="with --install: a test score for the card (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value added to the recipe's when training; with "
                             "--install, a post-processing value (repeatable)")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.name]
    if args.leave_out and args.install:
        parser.error("--leave-out trains a run for measurement; it is not installed")
    if args.leave_out:
        unknown = set(args.leave_out) - {dataset for dataset, _ in recipe.real}
        if unknown:
            parser.error(f"--leave-out {', '.join(sorted(unknown))}: not in the {args.name} "
                         f"recipe ({', '.join(d for d, _ in recipe.real) or 'no real data'})")
        recipe = dataclasses.replace(recipe, real=tuple(
            (d, s) for d, s in recipe.real if d not in args.leave_out))
    if args.without_synthetic and args.install:
        parser.error("--without-synthetic trains a run for measurement; it is not installed")
    if args.without_synthetic:
        recipe = dataclasses.replace(recipe, synthetic=())
    if args.spread_cells and args.install:
        parser.error("--spread-cells trains a run for measurement; it is not installed")
    if args.spread_cells:
        recipe = dataclasses.replace(recipe, synthetic=(*recipe.synthetic,
                                                        SPREAD_LOOKS[args.spread_cells]))
    if args.init and args.install:
        parser.error("--init trains a run for measurement; install the run it makes")
    if args.synthetic_share is not None:
        if not 0 <= args.synthetic_share <= 1 or args.install:
            parser.error("--synthetic-share takes a share in [0, 1], for a measurement run")
        recipe = dataclasses.replace(recipe, synthetic_share=args.synthetic_share)
    if args.outline or args.synth_range:
        recipe = dataclasses.replace(recipe, synthetic=tuple(
            dataclasses.replace(synth, outline=args.outline or synth.outline,
                                ranges=(*synth.ranges, *args.synth_range) if synth.randomise
                                else synth.ranges) if synth.kind == "cells" else synth
            for synth in recipe.synthetic))
    if args.install:
        scores = {}
        for item in args.score:
            key, sep, value = item.rpartition("=")
            if not sep:
                parser.error(f"--score expects MEASURE=VALUE, got {item!r}")
            scores[key] = float(value)
        model = install(args.name, recipe, args.install, args.dest, scores, args.set)
        print(json.dumps({"installed": str(model.path), "size_mb": model.size_mb,
                          "scores": model.scores}))
        return 0
    if args.set:  # training keys too: a measurement run changes the recipe this way
        recipe = dataclasses.replace(recipe, overrides=(*recipe.overrides, *args.set))
    # a leave-one-out run must not continue (or become) the recipe's own run
    name = "-without-".join([args.name, *sorted(args.leave_out)]) \
        + {None: "", "lobes": "-spread-cells"}.get(args.spread_cells,
                                                   f"-spread-cells-{args.spread_cells}") \
        + (f"-from-{Path(args.init).name}" if args.init else "")
    out = args.out or Path("runs/shipped") / name
    run = train_recipe(args.name, recipe, out, args.work, args.data_root, args.steps, args.quiet,
                       init=args.init)
    print(f"trained {args.name} into {run}; install it with: python benchmarks/train_shipped.py "
          f"{args.name} --install {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
