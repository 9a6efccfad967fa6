"""The run report's kit: panels (a title, PNGs, a table, a note) and the static HTML page.

Tasks build their own panels with it (``Task.report_panels``); ``pipeline/run_report.py``
gathers the rest of a run and writes ``<run_dir>/report/index.html``."""
from visionpipe.report.panels import Panel, Section, copy_in  # noqa: F401
from visionpipe.report.page import write_page  # noqa: F401
