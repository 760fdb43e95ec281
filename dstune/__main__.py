import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing: nothing was started or written
    print("dstune: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
