import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helpers import credentials, engine, hostvars, instances, play, redis  # noqa: E402,F401  (fixtures)
