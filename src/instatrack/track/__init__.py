"""Instance labels -> links -> track graph; divisions; exporters.

A track graph is a :class:`networkx.DiGraph` with integer nodes, one per object
per frame, carrying ``t`` (frame), ``label`` (track id = value in the output
label movie), ``y``, ``x`` (centroid, pixels) and ``area`` (pixels). Edges join
consecutive nodes of a track, and a parent's last node to each child's first
node (a division, or a gap bridged as CTC encodes it).

- :mod:`instatrack.track.link`: :class:`~instatrack.track.link.Tracker`, the streaming linker
- :mod:`instatrack.track.match`: IoU matching and per-label statistics
- :mod:`instatrack.track.export`: CTC result folder, napari tracks, CSV
"""
