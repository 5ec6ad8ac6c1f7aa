"""course_lib: the companion package of the knowledge-distillation course.

Each module holds one idea (profiles, data, models, losses, engine, ...); the notebooks import
from it. With ``COURSE_OFFLINE=1`` (set by the quick profile's runners: ``make course``,
``make test``) importing the package blocks every non-loopback network connection, so a
notebook that tries to download something fails at once with a clear message.
"""
import os as _os
import warnings as _warnings

# Without ipywidgets, tqdm.auto falls back to text progress bars in notebooks; that is what we want
# (widget output would need a CDN in the HTML export), so silence its warning about it.
_warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"

if _os.environ.get("COURSE_OFFLINE") == "1":
    from .netguard import block_network as _block_network

    _block_network()
