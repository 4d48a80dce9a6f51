"""Ray job entrypoint: the same arguments as ``speech-emotion annotate``.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"excludes": [".venv", ".git", ".models", "example-output"]}' \
        --entrypoint-num-cpus 0 -- python jobs/annotate.py s3://bucket/manifest.jsonl s3://out/

Inside a Ray job, RAY_ADDRESS is set, so the driver joins the cluster instead of starting one.
"""

from __future__ import annotations

import sys
from pathlib import Path

# With --working-dir the project is uploaded but not installed; python puts jobs/ on sys.path,
# not the project root, so add it. An image with the package installed works the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speech_emotion.cli import main

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
