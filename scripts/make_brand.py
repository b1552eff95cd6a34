"""Draw IoTShield's brand images (a shield with a house), as Home Assistant 2026.3+ reads them.

    python scripts/make_brand.py

Writes custom_components/iotshield/brand/icon.png (256 px square), icon@2x.png (512 px),
logo.png (256 px high) and logo@2x.png (512 px high), transparent PNGs trimmed to the shape.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BRAND = Path(__file__).parent.parent / "custom_components" / "iotshield" / "brand"
SHIELD = (24, 90, 157, 255)  # a deep blue
HOUSE = (255, 255, 255, 255)
DOT = (242, 153, 0, 255)  # the sensor's amber light
SCALE = 4  # drawn larger and scaled down, for smooth edges


def shield(size: int) -> Image.Image:
    """Return the square icon: a shield, a house in it, a dot for the sensor node."""
    big = size * SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    w = big
    outline = [
        (0.14 * w, 0.10 * w),
        (0.50 * w, 0.02 * w),
        (0.86 * w, 0.10 * w),
        (0.86 * w, 0.50 * w),
        (0.50 * w, 0.98 * w),
        (0.14 * w, 0.50 * w),
    ]
    draw.polygon(outline, fill=SHIELD)
    roof = [(0.28 * w, 0.48 * w), (0.50 * w, 0.28 * w), (0.72 * w, 0.48 * w)]
    draw.polygon(roof, fill=HOUSE)
    draw.rectangle((0.34 * w, 0.47 * w, 0.66 * w, 0.72 * w), fill=HOUSE)
    r = 0.06 * w
    draw.ellipse((0.50 * w - r, 0.56 * w - r, 0.50 * w + r, 0.56 * w + r), fill=DOT)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def logo(height: int) -> Image.Image:
    """Return the logo: the icon and the name beside it, trimmed."""
    icon = shield(height)
    font = ImageFont.load_default(size=int(height * 0.55))
    text_width = int(ImageDraw.Draw(icon).textlength("IoTShield", font=font))
    image = Image.new("RGBA", (height + int(height * 0.15) + text_width, height), (0, 0, 0, 0))
    image.paste(icon, (0, 0), icon)
    draw = ImageDraw.Draw(image)
    draw.text((height + int(height * 0.15), height // 2), "IoTShield", font=font, fill=SHIELD,
              anchor="lm")  # fmt: skip
    box = image.getbbox()
    return image.crop(box) if box else image


def main() -> None:
    """Write the four files."""
    BRAND.mkdir(parents=True, exist_ok=True)
    shield(256).save(BRAND / "icon.png", optimize=True)
    shield(512).save(BRAND / "icon@2x.png", optimize=True)
    logo(256).save(BRAND / "logo.png", optimize=True)
    logo(512).save(BRAND / "logo@2x.png", optimize=True)


if __name__ == "__main__":
    main()
