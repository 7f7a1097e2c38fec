# Make the in-tree package importable (python/tensorwire) without installing.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
