"""What every test shares: where things are, and how flowdeck is started."""

from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
EXAMPLES = ROOT / "examples" / "flows"
