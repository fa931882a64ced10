"""Tile geometry: the window grid over an image, and each object clipped to a window with its visible share.

Units: continuous ``px`` of the source image (pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``); windows are
``[x0, y0, x1, y1]`` int px, right and bottom edges exclusive. ``visible`` is the object's area inside the window over
its whole area, in [0, 1].

Kept libraries first: the grid is Ultralytics' ``split_dota.get_windows`` (8.4.190) and the visible share of rotated
boxes its ``bbox_iof`` (intersection over the object's area, with shapely). The rest of ``split_dota`` does not reach:
``get_window_obj`` keeps objects unclipped (corners outside the tile) and edits the labels in place,
``crop_and_save`` writes DOTA-named JPEGs at OpenCV's default quality for OBB labels only, and both need DOTA's
``images/{train,val}`` layout. Polygons are clipped with shapely; boxes by arithmetic.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-9  # tolerance of the min_visible comparison (visible shares are float64 ratios of areas)


def windows(width: int, height: int, tile: int, overlap: float) -> np.ndarray:
    """The windows of an image, row by row: (n, 4) int64 ``[x0, y0, x1, y1]`` px.

    A regular grid with a step of ``tile - gap`` px, ``gap = round(overlap * tile)`` (at most ``tile - 1``); the last
    window of a row or column lies flush with the image edge (so it overlaps its neighbour by at least ``gap``). A
    side shorter than ``tile`` gets one window of that side: windows never reach past the image, tiles are never
    padded (Ultralytics letterboxes each tile to ``imgsz`` anyway).
    """
    from ultralytics.data.split_dota import get_windows

    gap = min(int(round(overlap * tile)), tile - 1)
    # im_rate_thr=0 keeps every window: with the last one flush, every window lies on the image
    w = get_windows((height, width), crop_sizes=(tile,), gaps=(gap,), im_rate_thr=0.0).astype(np.int64)
    w[:, 2], w[:, 3] = np.minimum(w[:, 2], width), np.minimum(w[:, 3], height)
    w = np.unique(w, axis=0)
    return w[np.lexsort((w[:, 0], w[:, 1]))]  # row by row: y0, then x0


def clip_boxes(boxes: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to a window.

    Args:
        boxes: (n, 4) xyxy px.
        window: (4,) ``[x0, y0, x1, y1]`` px.

    Returns:
        clipped (n, 4) xyxy px, relative to the window's top-left corner; visible (n,) share of each box's area inside
        (0 for a box of no area).
    """
    lo, hi = np.maximum(boxes[:, :2], window[:2]), np.minimum(boxes[:, 2:], window[2:])
    wh = np.clip(hi - lo, 0, None)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], 1)
    visible = np.divide(np.prod(wh, 1), area, out=np.zeros(len(boxes)), where=area > 0)
    return np.concatenate((lo, np.maximum(hi, lo)), 1) - np.tile(window[:2], 2), visible


def obb_visible(corners: np.ndarray, windows_px: np.ndarray) -> np.ndarray:
    """The visible share of every rotated box in every window: (n, m), from ``split_dota.bbox_iof``.

    Args:
        corners: (n, 4, 2) px, each box's corners in order.
        windows_px: (m, 4) ``[x0, y0, x1, y1]`` px.
    """
    from ultralytics.data.split_dota import bbox_iof

    if not len(corners):
        return np.zeros((0, len(windows_px)))
    return bbox_iof(corners.reshape(-1, 8), windows_px.astype(np.float64)).reshape(len(corners), len(windows_px))


def clip_obb(corners: np.ndarray, window: np.ndarray) -> np.ndarray:
    """A rotated box clipped to a window: its own-frame rectangle around its visible part.

    The box's frame is spanned by its first two edges (``c1 - c0``, ``c3 - c0``); the visible polygon's extent in
    that frame gives the clipped box, so it keeps the object's angle, lies inside the object, and its part inside the
    window is exactly the visible part; corners may lie outside the window where the object continues past the
    edge. This is the rule of Ultralytics' own ``Instances.clip(preserve_obb=True)`` (8.4.190), which its augmentations
    apply to rotated boxes cut by an image border. The minimum-area rectangle of the clipped polygon is not used: its
    angle follows where the cut falls, not the object, and would teach the model wrong headings.

    Args:
        corners: (4, 2) px, in order around the box.
        window: (4,) ``[x0, y0, x1, y1]`` px.

    Returns:
        (4, 2) px relative to the window's top-left corner, in the order of ``corners``; an unclipped box unchanged.
    """
    import shapely

    if (corners >= window[:2]).all() and (corners <= window[2:]).all():
        return corners - window[:2]
    basis = np.stack((corners[1] - corners[0], corners[3] - corners[0]), 1)  # (2, 2): columns u, v
    visible = shapely.intersection(shapely.Polygon(corners), shapely.box(*window))
    points = np.asarray(shapely.get_coordinates(visible))  # (k, 2) px
    ab = np.linalg.solve(basis, (points - corners[0]).T)  # (2, k): the points in the box's frame, 0..1 inside it
    (a0, b0), (a1, b1) = np.clip(ab.min(1), 0, 1), np.clip(ab.max(1), 0, 1)
    frame = np.array([(a0, b0), (a1, b0), (a1, b1), (a0, b1)])  # (4, 2) in the order c0, c1, c2, c3
    return corners[0] + frame @ basis.T - window[:2]


def clip_polygon(points: np.ndarray, window: np.ndarray) -> tuple[np.ndarray | None, float]:
    """A polygon clipped to a window, with its visible share.

    A polygon that the window cuts in several parts becomes one polygon, the parts joined by zero-width bridges as
    Ultralytics' ``merge_multi_segment`` joins the parts of a COCO mask (a YOLO label row holds one polygon). A
    self-intersecting polygon is first made valid (``shapely.make_valid``).

    Args:
        points: (n, 2) px, n >= 3.
        window: (4,) ``[x0, y0, x1, y1]`` px.

    Returns:
        (k, 2) px relative to the window's top-left corner (``None`` where nothing is visible; an unclipped polygon's
        own vertices), and the visible share in [0, 1] (0 for a polygon of no area).
    """
    import shapely

    polygon = shapely.Polygon(points)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    area = polygon.area
    if area <= 0:
        return None, 0.0
    frame = shapely.box(*window)
    if frame.contains(polygon):
        return points - window[:2], 1.0
    visible = shapely.intersection(polygon, frame)
    parts = [g for g in shapely.get_parts(visible) if isinstance(g, shapely.Polygon) and g.area > 0]
    if not parts:
        return None, 0.0
    share = sum(g.area for g in parts) / area
    rings = [np.asarray(g.exterior.coords)[:-1] for g in parts]  # (k_i, 2) each, without the closing repeat
    if len(rings) > 1:
        from ultralytics.data.converter import merge_multi_segment

        rings = [np.concatenate(merge_multi_segment([r.ravel().tolist() for r in rings]), 0)]
    return rings[0] - window[:2], float(share)


def kept(visible: np.ndarray | float, min_visible: float) -> np.ndarray | bool:
    """Whether an object with this visible share is kept in a tile: ``visible >= min_visible`` (to ``EPS``)."""
    return np.asarray(visible) + EPS >= min_visible
