"""Learning curves of budget runs: validation bits/dim against wall-clock minutes.

Reads the JSON lines `bench/budget.py` printed (its `curve`: [minutes, step, bits/dim]
of each validation) and draws them in one PNG, one colour per run, with the final
test figure of the weights each run selected in the legend:

  python bench/plot_curves.py --output=docs/images/mnist_budget_curves.png \\
      baseline=docs/budget/mnist_baseline.json recipe=docs/budget/mnist_fast.json

Pillow only (no plotting library is a dependency).
"""

import json
import math
import sys

from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "The PNG to write.", required=True)
flags.DEFINE_string("title", "validation bits/dim against training minutes", "Title.")
flags.DEFINE_float("y_max", None, "Upper end of the bits/dim axis (default: the "
                   "data's).")

_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189),
            (255, 127, 14), (23, 190, 207)]
_SIZE, _MARGIN = (800, 500), (70, 30, 20, 50)  # left, top (+ the legend), right, bottom
_LEGEND_LINE = 16


def read_run(path):
  """The last JSON line of `path` that has a budget run's curve."""
  with open(path) as f:
    runs = [json.loads(line) for line in f if line.strip().startswith("{")]
  runs = [run for run in runs if run.get("curve")]
  if not runs:
    raise ValueError(f"{path}: no bench/budget.py JSON line with a curve.")
  return runs[-1]


def nice_ticks(low, high, count=6):
  """Round tick values covering [low, high]."""
  raw = (high - low) / max(count - 1, 1)
  step = 10 ** math.floor(math.log10(raw))
  step *= min((m for m in (1, 2, 5, 10) if m * step >= raw), default=10)
  first = math.floor(low / step + 1e-9) * step
  count = int(math.ceil((high - first) / step - 0.02))  # 20.004 min: the 20 tick
  return [first + i * step for i in range(count + 1)]


def draw(runs, path, title, y_max=None):
  """`runs`: [(label, budget JSON)] -> a PNG at `path`."""
  points = [p for _, run in runs for p in run["curve"]]
  x_ticks = nice_ticks(0.0, max(p[0] for p in points))
  y_low = min(p[2] for p in points)
  y_high = y_max if y_max is not None else max(p[2] for p in points)
  y_ticks = [t for t in nice_ticks(y_low, y_high) if t <= y_high + 1e-9] or [y_high]
  y_range = (min(y_ticks[0], y_low), max(y_ticks[-1], y_high))
  image = Image.new("RGB", _SIZE, "white")
  pen = ImageDraw.Draw(image)
  left, top, right, bottom = _MARGIN
  top += _LEGEND_LINE * len(runs)  # the legend sits between the title and the plot
  width, height = _SIZE[0] - left - right, _SIZE[1] - top - bottom

  def xy(minutes, bits):
    bits = min(bits, y_range[1])
    return (left + width * minutes / x_ticks[-1],
            top + height * (y_range[1] - bits) / (y_range[1] - y_range[0]))

  pen.rectangle([left, top, left + width, top + height], outline="black")
  for tick in x_ticks:
    x, _ = xy(tick, y_range[0])
    pen.line([x, top + height, x, top + height + 5], fill="black")
    pen.text((x - 8, top + height + 8), f"{tick:g}", fill="black")
  for tick in y_ticks:
    _, y = xy(0, tick)
    pen.line([left - 5, y, left + width, y], fill=(220, 220, 220))
    pen.text((5, y - 6), f"{tick:.2f}", fill="black")
  pen.text((left + width // 2 - 60, _SIZE[1] - 20), "training minutes", fill="black")
  pen.text((left, 10), title, fill="black")
  for i, (label, run) in enumerate(runs):
    colour = _COLOURS[i % len(_COLOURS)]
    line = [xy(p[0], p[2]) for p in run["curve"]]
    if len(line) > 1:
      pen.line(line, fill=colour, width=3)
    for x, y in line:
      pen.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    legend = (f"{label}: test {run['selected_test_bits_per_dim']:.3f} "
              f"({run['steps']} steps)")
    y = _MARGIN[1] + _LEGEND_LINE * i
    pen.line([left, y + 6, left + 25, y + 6], fill=colour, width=3)
    pen.text((left + 30, y), legend, fill="black")
  image.save(path)


def main(argv):
  runs = []
  for arg in argv[1:]:
    label, sep, path = arg.partition("=")
    if not sep:
      raise app.UsageError(f"{arg!r}: give each run as LABEL=PATH.")
    try:
      runs.append((label, read_run(path)))
    except (OSError, ValueError) as e:
      raise SystemExit(f"plot_curves.py: error: {e}") from None
  if not runs:
    raise app.UsageError("Give at least one LABEL=PATH of bench/budget.py output.")
  draw(runs, FLAGS.output, FLAGS.title, FLAGS.y_max)
  print(FLAGS.output, file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
