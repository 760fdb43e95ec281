import sys

try:
    from .cli import entry
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing: nothing was started or written
    print("dstune: interrupted", file=sys.stderr)
    sys.exit(130)

entry()
