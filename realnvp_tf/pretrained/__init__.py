"""Trained models that ship with the package, loaded by name: nothing to download.

    import realnvp_tf
    model = realnvp_tf.load_pretrained("digits")   # a runs.loading.LoadedModel
    model.bits_per_dim(images, seed=(0, 0)); model.sample(16, temperature=0.7)

Each model is the export of a train.py run (a SavedModel that TensorFlow alone
serves), stored compactly in `realnvp_tf/pretrained/NAME/model/` (`storage`: the graph
compressed, the kernels in float16) beside its card, `card.json`: the dataset, the
config file and commands that trained it, its steps, wall time and machine, its test
bits/dim and the figure it gives on a fixed set of test images (`card["check"]`),
which the tests recompute. `card.md` is the card as text, and docs/pretrained.md holds
every card.

On first use a model's SavedModel is written from its stored form into a cache folder
(`cache_folder()`: $REALNVP_TF_CACHE, else $XDG_CACHE_HOME/realnvp_tf or
~/.cache/realnvp_tf), in a sub-folder named by the stored files' hash, and reused
after: `saved_model_path(name)` is an ordinary export directory.
"""

import hashlib
import importlib.resources
import json
import os
import shutil
import tempfile

from realnvp_tf.pretrained import storage
from realnvp_tf.runs import loading

CARD_FILE = "card.json"
MODEL_FOLDER = "model"
CACHE_VARIABLE = "REALNVP_TF_CACHE"


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


def stored_path(name):
  """The folder of shipped model `name`'s stored form (`storage`)."""
  return os.path.join(path(name), MODEL_FOLDER)


def cache_folder():
  """Where shipped models' SavedModels are written on first use (made if needed)."""
  folder = os.environ.get(CACHE_VARIABLE) or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                       ".cache"), "realnvp_tf")
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as error:
    raise ValueError(f"cannot write the pretrained models' cache folder {folder} "
                     f"({error.strerror}); set {CACHE_VARIABLE} to a writable "
                     f"folder.") from error
  return folder


def _digest(folder):
  sha = hashlib.sha256()
  for name in (storage.GRAPH_FILE, storage.WEIGHTS_FILE):
    with open(os.path.join(folder, name), "rb") as f:
      sha.update(f.read())
  return sha.hexdigest()[:16]


def saved_model_path(name):
  """The SavedModel directory of shipped model `name`, written into the cache folder
  on first use (by one process at a time: the last step is a rename)."""
  stored = stored_path(name)
  target = os.path.join(cache_folder(), f"{name}-{_digest(stored)}")
  if not os.path.isdir(target):
    scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(target))
    try:
      storage.restore(stored, os.path.join(scratch, MODEL_FOLDER))
      try:
        os.rename(os.path.join(scratch, MODEL_FOLDER), target)
      except OSError:  # another process wrote it first: the same files
        if not os.path.isdir(target):
          raise
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
  return target


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
  trained = card.get("trained_test_bits_per_dim")
  shipped = (f"; `eval.py --pretrained={card['name']}`, {trained:.4f} as trained"
             if trained is not None else "")
  lines = [
      f"### {card['name']}",
      "",
      f"- Dataset: {card['dataset']}; config `{card['config']}`.",
      f"- Trained for {card['steps']:,} steps ({card['epochs']} epochs), weights of "
      f"step {card['selected_step']:,} (the best validation figure); "
      f"{_duration(card['training_seconds'])} of training on {card['machine']}.",
      f"- Test bits/dim: **{card['test_bits_per_dim']:.4f}** "
      f"+- {card['test_bits_per_dim_stderr']:.4f} (standard error, "
      f"{card['test_images']:,} test images, uniform dequantization{shipped}).",
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
      f"- On disk: {card['size_bytes'] / 1e6:.1f} MB in the package (the graph "
      f"compressed, the convolution kernels in float16); with float32 kernels, as "
      f"trained, the check figure was {check['unrounded_bits_per_dim']:.5f}.",
  ]
  ood = card.get("ood")
  if ood:
    aurocs = ", ".join(f"{name} {value:.3f}" for name, value in ood["auroc"].items())
    lines.append(
        f"- Out of distribution: its test images ({ood['num_in']:,}) against "
        f"{ood['ood']} ({ood['num_ood']:,} images), AUROC with the other set as "
        f"positive (`eval.py --ood_dataset`): {aurocs}.")
  if card.get("notes"):
    lines.append(f"- {card['notes']}")
  lines += ["", "Trained by:", "", "```bash", commands, "```", "",
            f"![learning curve]({images}learning_curve.png) "
            f"![samples at T = {card['sample_temperature']}]({images}samples.png)", ""]
  return "\n".join(lines)


def docs_card_text(card):
  """`card_text` as docs/pretrained.md shows it (links into the package)."""
  return card_text(card, images=f"../realnvp_tf/pretrained/{card['name']}/")
