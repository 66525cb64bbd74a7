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
    """Darkened copies of scikit-image's bundled public-domain photos (offline; as `engan eval --public-dark`)."""
    from engan.eval.public_dark import write_public_dark_set

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
    return write_public_dark_set(folder / "public_dark", names, with_high=False) / "low"


def main() -> int:
    lime = SHARED / "data" / "unpaired_test" / "LIME"
    if lime.is_dir():
        inputs = lime
        print(f"demo: enhancing the LIME test photos in {lime}")
    else:
        inputs = darkened_samples(OUT)
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
