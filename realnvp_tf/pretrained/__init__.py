"""Trained models that ship with the package, loaded by name: nothing to download.

    import realnvp_tf
    model = realnvp_tf.load_pretrained("digits")   # a runs.loading.LoadedModel
    model.bits_per_dim(images, seed=(0, 0)); model.sample(16, temperature=0.7)

Each model is the export of a train.py run (a SavedModel that TensorFlow alone
serves) in `realnvp_tf/pretrained/NAME/model/`, beside its card, `card.json`: the
dataset, the config file and commands that trained it, its steps, wall time and
machine, its test bits/dim and the figure it gives on a fixed set of test images
(`card["check"]`), which the tests recompute. `card.md` is the card as text, and
docs/pretrained.md holds every card.
"""

import importlib.resources
import json
import os

from realnvp_tf.runs import loading

CARD_FILE = "card.json"
MODEL_FOLDER = "model"


def _folder():
  return importlib.resources.files(__name__)


def names():
  """The names of the shipped models, sorted."""
  return sorted(entry.name for entry in _folder().iterdir()
                if entry.is_dir() and (entry / CARD_FILE).is_file())


def path(name):
  """The folder of shipped model `name` (its card and `model/`); ValueError (one
  line, listing the names) for a name that is not shipped."""
  shipped = names()
  if name not in shipped:
    raise ValueError(f"no pretrained model named {name!r}; this package ships "
                     f"{', '.join(shipped) or 'none'}.")
  return os.fspath(_folder() / name)


def card(name):
  """The card of shipped model `name`, as a dict (see the module docstring)."""
  with open(os.path.join(path(name), CARD_FILE)) as f:
    return json.load(f)


def saved_model_path(name):
  """The SavedModel directory of shipped model `name`."""
  return os.path.join(path(name), MODEL_FOLDER)


def load_pretrained(name):
  """Shipped model `name` ("digits", ...; `names()` lists them), loaded as
  `realnvp_tf.load` loads an export."""
  return loading.load_saved_model(saved_model_path(name))


def _duration(seconds):
  if seconds < 3600:
    return f"{seconds / 60:.1f} minutes"
  return f"{seconds / 3600:.2f} hours"


def card_text(card, images=""):
  """The card as Markdown (card.md; `images`: the folder its PNG links start with)."""
  check = card["check"]
  commands = "\n".join(card["commands"])
  lines = [
      f"### {card['name']}",
      "",
      f"- Dataset: {card['dataset']}; config `{card['config']}`.",
      f"- Trained for {card['steps']:,} steps ({card['epochs']} epochs), weights of "
      f"step {card['selected_step']:,} (the best validation figure); "
      f"{_duration(card['training_seconds'])} of training on {card['machine']}.",
      f"- Test bits/dim: **{card['test_bits_per_dim']:.4f}** "
      f"+- {card['test_bits_per_dim_stderr']:.4f} (standard error, "
      f"{card['test_images']:,} test images, uniform dequantization).",
  ]
  bound = card.get("importance_weighted")
  if bound:
    lines.append(
        f"- Importance-weighted bound with S = {bound['samples']} noise draws per "
        f"image (`eval.py --num_dequant_samples={bound['samples']}`, a tighter upper "
        f"bound on the same model's discrete NLL): {bound['bits_per_dim']:.4f} +- "
        f"{bound['bits_per_dim_stderr']:.4f}.")
  lines += [
      f"- Check figure: {check['bits_per_dim']:.5f} bits/dim on the first "
      f"{check['images']:,} test images with noise seed {tuple(check['seed'])} "
      f"(`model.bits_per_dim(images, seed)`); the tests recompute it.",
      f"- On disk: {card['size_bytes'] / 1e6:.1f} MB (the exported SavedModel).",
  ]
  if card.get("notes"):
    lines.append(f"- {card['notes']}")
  lines += ["", "Trained by:", "", "```bash", commands, "```", "",
            f"![learning curve]({images}learning_curve.png) "
            f"![samples at T = {card['sample_temperature']}]({images}samples.png)", ""]
  return "\n".join(lines)


def docs_card_text(card):
  """`card_text` as docs/pretrained.md shows it (links into the package)."""
  return card_text(card, images=f"../realnvp_tf/pretrained/{card['name']}/")
