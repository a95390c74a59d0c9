"""``fto_async.report``: the HTML report's old home, kept because the README named it.

Everything lives in :mod:`fto_async.outputs` now (``from fto_async.outputs import
write_html``); this module only re-exports the report's names.
"""

from .outputs import HtmlReport, Product, write_html

__all__ = ["HtmlReport", "Product", "write_html"]
