"""The report kit without a run: a page from panels, escaped, its PNGs beside it."""
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from visionpipe.report import Panel, Section, panels, write_page


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.cells = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.cells.append(data)


def test_page_escapes_text_and_shows_the_confusion_matrix_and_curves_it_names(tmp_path):
    matrix = np.array([[5, 1], [0, 4]])
    names = ["cat <b>", "dog"]
    images = [panels.confusion_matrix_png(matrix, names, str(tmp_path), "cm.png", True),
              panels.history_png({"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6],
                                  "learning_rate": [0.1, 0.05, 0.01]}, {"phase1": 2, "phase2": 1},
                                 str(tmp_path), "results.png")]
    page = write_page(str(tmp_path), "run <1>", [Section("evaluation", [
        Panel("matrix", images=images, headers=("class", "recall"), rows=[(names[0], 5 / 6)])])])
    text = open(page).read()
    assert "<b>" not in text and "cat &lt;b&gt;" in text and "run &lt;1&gt;" in text
    parser = _Tags()
    parser.feed(text)
    assert parser.images == ["cm.png", "results.png"]
    assert "0.8333" in parser.cells
    for name in parser.images:
        with Image.open(tmp_path / name) as image:
            image.load()
            assert min(image.size) > 100
