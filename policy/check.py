"""`python -m policy.check`, as teams' CI calls it: the offline runner now lives in `runner/`, beside the pack.

Same flags, output and exit codes as `python -m runner.check`. Not part of the pack: `pulumi preview
--policy-pack policy` never imports it.
"""

import sys

if __name__ == "__main__":
    from runner.check import main

    sys.exit(main())
