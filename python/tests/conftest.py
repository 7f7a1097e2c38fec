# Make the in-tree package importable (python/tensorwire) without installing.
import os
import sys

# Appended: a build tree on PYTHONPATH (with tensorwire._C) comes first.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
