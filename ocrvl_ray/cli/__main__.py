"""``python -m ocrvl_ray.cli`` = ``ocrvl``."""
import sys

from ocrvl_ray.cli import main

sys.exit(main())
