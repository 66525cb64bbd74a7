"""`make demo`: enhance a few real dark photos with the shipped model and write an HTML page.

Uses ../shared/data/unpaired_test/LIME when present (research data, never copied
into the repo); otherwise darkens a few public-domain photos that scikit-image
ships and enhances those.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGAN_SHARED", REPO.parent / "shared"))
OUT = REPO / "demo_out"


def darkened_samples(folder: Path) -> Path:
    """Write darkened copies of scikit-image's bundled sample photos (offline)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"):
        img = getattr(data, name)().astype(np.float32) / 255.0
        dark = np.clip((img**2.2) * 0.25, 0, 1)  # under-exposed by ~2 stops, crushed shadows
        Image.fromarray((dark * 255 + 0.5).astype(np.uint8)).save(folder / f"{name}_dark.png")
    return folder


def main() -> int:
    lime = SHARED / "data" / "unpaired_test" / "LIME"
    if lime.is_dir():
        inputs = lime
        print(f"demo: enhancing the LIME test photos in {lime}")
    else:
        inputs = darkened_samples(OUT / "inputs")
        print(f"demo: {lime} not found; enhancing darkened scikit-image samples in {inputs}")
    exe = Path(sys.executable).with_name("engan-infer")
    cmd = [str(exe), str(inputs), str(OUT / "enhanced"), "--html", "--overwrite", "--compare"]
    print("demo:", " ".join(cmd))
    rc = subprocess.call(cmd)
    if rc == 0:
        print(f"demo: open {OUT / 'enhanced' / 'index.html'} to compare before/after")
    return rc


if __name__ == "__main__":
    sys.exit(main())
