"""The one place that maps a stage to its container image. Releases pin these by digest."""
from posttrain import stage_table

REGISTRY = "ghcr.io/posttrain"
VERSION = "0.1.0"
# image -> "sha256:...", from `docker buildx bake --push --metadata-file` (images/README.md); empty between releases
DIGESTS: dict[str, str] = {}

IMAGES = {name: f"{REGISTRY}/{name}:{VERSION}" + (f"@{DIGESTS[name]}" if name in DIGESTS else "")
          for name in stage_table.IMAGES}  # image name -> reference


def image(stage: str) -> str:
    """The image reference a stage's component runs in."""
    return IMAGES[stage_table.STAGES[stage].image]
