"""napari plugin: open CTC / GEFF / OME-Zarr data, save labels + tracks, segment and track.

Declared in ``napari.yaml`` (npe2) and installed with ``pip install "instatrack[napari]"``.

- reader (:mod:`._reader`): a CTC sequence folder (image + ground-truth labels
  and tracks), a CTC result folder, a GEFF (labels + tracks) or an OME-Zarr
  image (with its labels images);
- writers (:mod:`._writer`): a Labels layer (with its Tracks layer, for the
  lineage) to a CTC result folder or a GEFF;
- widget (:mod:`._widget`): pick a trained run and an image layer, segment or
  track it in a worker thread with a progress bar and a cancel button;
- sample data (:mod:`._sample`): a synthetic fluorescence time-lapse.

The conversions between layers and instatrack's track graph live in
:mod:`.layers`, which needs neither napari nor Qt.
"""
