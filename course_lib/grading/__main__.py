"""``python -m course_lib.grading ...``: the command line of ``cli``."""
import sys

from course_lib.grading.cli import main

sys.exit(main())
