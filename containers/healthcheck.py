"""Docker HEALTHCHECK: exit 0 when the server in this container answers GET /health with 200.

Plain Python (no curl in the images); the port comes from the same PORT variable the
server reads.
"""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure is simply "not healthy"
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
