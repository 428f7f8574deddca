"""Real photographs for tests: six CC0 / public-domain photos from scikit-image's wheel, kept under
tests/fixtures/photos (SOURCES.md says where each comes from and its licence).

Subject boxes were measured by eye on 3-4× zoomed crops with a 10 px grid, at the subject's outermost pixels
(±2 px); they are (left, top, right, bottom) with right and bottom exclusive, like PIL's boxes. `background`
rectangles are parts of the box that show only background, read off the same crops with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

Box = tuple[int, int, int, int]


DATA_DIR = Path(__file__).resolve().parent / "fixtures" / "photos"


@dataclass(frozen=True)
class Photo:
    """One photograph and, for a subject photo, where its subject is."""

    file: str
    size: tuple[int, int]
    box: Box | None = None
    background: tuple[Box, ...] = ()

    @property
    def path(self) -> Path:
        """The file under tests/fixtures/photos."""
        return DATA_DIR / self.file

    def open(self) -> Image.Image:
        """The photo, loaded."""
        with Image.open(self.path) as img:
            img.load()
            return img


# Eileen Collins' NASA portrait: the person and the helmet she holds (hair top y=15, suit's left edge x=20, the
# helmet's clamp x=505, cut by the bottom edge); the flag and the shuttle model beside her are background.
PORTRAIT = Photo("astronaut.png", (512, 512), box=(20, 15, 506, 512),
                 background=((0, 0, 100, 200), (372, 0, 470, 270)))
# A tabby's face filling the frame up to its right ear (x=387); a blurred white and pink room behind it.
CAT = Photo("chelsea.png", (451, 300), box=(0, 0, 388, 300), background=((0, 0, 20, 90),))
# An espresso cup on its saucer with a spoon, seen from above on a wooden table (saucer x=77-479, rim top y=18).
PRODUCT = Photo("coffee.png", (600, 400), box=(77, 18, 480, 387))
# scikit-image's logo: a snake in a disc of radius ~240 at the centre, on white (RGBA, but opaque all over).
LOGO = Photo("logo.png", (500, 500))
# A photographed book page, printed English text ("Region-based segmentation ..."), greyscale.
TEXT_PAGE = Photo("page.png", (384, 191))
