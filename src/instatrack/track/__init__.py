"""Instance labels -> links -> track graph; divisions; exporters.

A track graph is a :class:`networkx.DiGraph` with integer nodes, one per object
per frame, carrying ``t`` (frame), ``label`` (track id = value in the output
label movie), ``y``, ``x`` (centroid, pixels) and ``area`` (pixels). Edges join
consecutive nodes of a track, and a parent's last node to each child's first
node (a division, or a gap bridged as CTC encodes it).

- :mod:`instatrack.track.rules`: the tracker's settings and its decisions (pure functions)
- :mod:`instatrack.track.lineage`: the edits of the graph once later frames have spoken
- :mod:`instatrack.track.link`: :class:`~instatrack.track.link.Tracker`, the streaming
  driver that feeds frames through the rules
- :mod:`instatrack.track.export`: CTC result folder, napari tracks, CSV

Label helpers (IoU matching, per-object statistics) live in :mod:`instatrack.labels`,
shared with the measures; ``track`` does not import ``metrics``.
"""
