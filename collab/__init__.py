"""collab: a small language model guides a large one to extract relations, and turns novels into
character relation graphs. See README.md for the commands and the API."""
from .api import evaluate, extract, make_pair
from .config import Config
from .data import DataError, Mention, Pair, Prediction, read_pairs

__version__ = "0.1.0"
__all__ = ["Config", "DataError", "Mention", "Pair", "Prediction", "evaluate", "extract", "make_pair", "read_pairs"]
