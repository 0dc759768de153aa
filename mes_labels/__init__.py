"""Label programs (ZPL, TSPL, EZPL) for LOT and serial labels, and an offline ZPL preview."""

from mes_labels.fonts import LabelFontMissing
from mes_labels.model import InvalidLabelData, LabelContent, LabelLayout
from mes_labels.preview import ZplPreviewError, zpl_to_images, zpl_to_png
from mes_labels.render import render_label

__all__ = [
    "InvalidLabelData",
    "LabelContent",
    "LabelFontMissing",
    "LabelLayout",
    "ZplPreviewError",
    "render_label",
    "zpl_to_images",
    "zpl_to_png",
]
