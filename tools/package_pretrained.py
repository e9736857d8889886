"""Puts a finished train.py run into the package as a shipped model, with its card.

  python tools/package_pretrained.py --name=digits --model_dir=runs/pretrained_digits \\
      --config=configs/pretrained_digits.cfg \\
      --command="python train.py --flagfile=configs/pretrained_digits.cfg \\
                 --model_dir=runs/pretrained_digits"

Stores the run's export in realnvp_tf/pretrained/NAME/model/ (`pretrained.storage`:
the graph compressed, the kernels in float16), measures the check figure (mean bits/dim
of the first --check_images test images, noise seed (0, 0), through the restored
export's own signature: what the tests recompute in a TensorFlow-only process) and the
same figure of the unrounded export, draws the learning curve (validation bits/dim
against training minutes, from the run's TensorBoard events) and a sample grid, and
writes card.json, card.md and the model's section of docs/pretrained.md. A
maintainer's tool: not installed.
"""

import itertools
import json
import os
import platform
import shutil
import sys
import tempfile

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "bench")]  # this checkout, and plot_curves

FLAGS = flags.FLAGS
flags.DEFINE_string("name", None, "The model's name (realnvp_tf.load_pretrained's).",
                    required=True)
flags.DEFINE_string("model_dir", None, "The finished train.py run.", required=True)
flags.DEFINE_string("config", None, "The flagfile that trained it (repo-relative).",
                    required=True)
flags.DEFINE_multi_string("command", [], "The commands that trained it, in order.")
flags.DEFINE_string("manual_dir", None, "Official files of the dataset, if needed.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_integer("check_images", 1000, "Test images of the check figure.")
flags.DEFINE_float("temperature", 0.7, "Temperature of the card's sample grid.")
flags.DEFINE_string("bound", None, "The JSON eval.py --output wrote for this model "
                    "with --num_dequant_samples=S > 1: the importance-weighted bound "
                    "goes on the card beside the uniform-dequantization figure.")
flags.DEFINE_string("eval", None, "The JSON `eval.py --pretrained=NAME --output=...` "
                    "wrote for the model this tool stored before: the card's test "
                    "figure is then the shipped model's, and its AUROCs (with "
                    "--ood_dataset) go on the card.")
flags.DEFINE_enum("serving_dtype", None, ["float32", "bfloat16", "float16"],
                  "Store the run's weights exported anew with s/t networks in this "
                  "precision instead of the run's own export (float32 for a model "
                  "trained in bfloat16: exact round trips).")
flags.DEFINE_string("notes", "", "Anything else the card should say.")


def _events(folder, tag):
  """[(wall_time, step, value)] of scalar `tag` in a run's TensorBoard folder."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = []
  for path in sorted(tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          out.append((event.wall_time, event.step,
                      float(tf.make_ndarray(value.tensor))))
  return out


def _curve(model_dir):
  """([minutes, step, validation bits/dim], training wall seconds): time from the
  run's first logged step, each gap between logged steps capped at 10 minutes (so a
  resumed run's pause between legs is left out)."""
  times = sorted(t for t, _, _ in _events(os.path.join(model_dir, "train"),
                                         "bits_per_dim"))

  def active_seconds(until):
    points = [t for t in times if t < until] + [until]
    return sum(min(b - a, 600.0) for a, b in itertools.pairwise(points))

  validation = _events(os.path.join(model_dir, "validation"), "bits_per_dim")
  return ([[round(active_seconds(t) / 60.0, 3), step, bits]
           for t, step, bits in validation], round(active_seconds(times[-1]), 1))


def _machine():
  import benchlib  # pylint: disable=g-import-not-at-top
  info = benchlib.machine_info()
  amx = " with AMX" if "amx_bf16" in info["cpu_flags"] else ""
  return f"{info['cpu_model']}{amx}, {info['nproc']} cores ({platform.machine()})"


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top

  import plot_curves  # pylint: disable=g-import-not-at-top
  import realnvp_tf  # pylint: disable=g-import-not-at-top
  from realnvp_tf import data  # pylint: disable=g-import-not-at-top
  from realnvp_tf import pretrained  # pylint: disable=g-import-not-at-top
  from realnvp_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
  from realnvp_tf.evaluation import model_images  # pylint: disable=g-import-not-at-top
  from realnvp_tf.pretrained import storage  # pylint: disable=g-import-not-at-top
  from realnvp_tf.runs import export  # pylint: disable=g-import-not-at-top
  from realnvp_tf.runs import loading  # pylint: disable=g-import-not-at-top

  run = FLAGS.model_dir
  with open(os.path.join(run, "metrics.json")) as f:
    metrics = json.load(f)
  folder = os.path.join(REPO, "realnvp_tf", "pretrained", FLAGS.name)
  stored = os.path.join(folder, pretrained.MODEL_FOLDER)
  shutil.rmtree(folder, ignore_errors=True)
  scratch = tempfile.mkdtemp()
  export_dir = os.path.join(run, "export")
  if FLAGS.serving_dtype:
    flow, _, _ = loading.restore_for_inference(run, FLAGS.serving_dtype)
    export_dir = export.export_saved_model(flow, os.path.join(scratch, "export"),
                                           realnvp_tf.load(export_dir).metadata)
  rounded = storage.store(export_dir, stored)
  storage.restore(stored, os.path.join(scratch, "model"))
  model = realnvp_tf.load(os.path.join(scratch, "model"))

  info = model_images.data_info(model, data_dir=FLAGS.data_dir,
                                manual_dir=FLAGS.manual_dir)
  images = np.concatenate([batch.numpy() for batch in data.make_uint8_dataset(
      info, "test").batch(256).take(-(-FLAGS.check_images // 256))])
  images = images[:FLAGS.check_images]
  check = float(np.mean(model.bits_per_dim(images, seed=(0, 0))))
  unrounded = float(np.mean(realnvp_tf.load(export_dir).bits_per_dim(images,
                                                                     seed=(0, 0))))

  curve, seconds = _curve(run)
  summary = {"curve": curve, "steps": metrics["step"],
             "selected_test_bits_per_dim": metrics["bits_per_dim"]}
  plot_curves.draw([(FLAGS.name, summary)], os.path.join(folder, "learning_curve.png"),
                   f"{FLAGS.name}: validation bits/dim against training minutes")
  figures.write_png(os.path.join(folder, "samples.png"),
                    figures.sample_grid(model, FLAGS.temperature, (0, 0)))
  with open(os.path.join(run, "config.json")) as f:
    batch_size = json.load(f)["train"]["batch_size"]
  train_images = info.num_train
  card = {
      "name": FLAGS.name, "dataset": model.dataset, "config": FLAGS.config,
      "commands": FLAGS.command, "steps": metrics["step"],
      "selected_step": metrics.get("selected_step"),
      "epochs": round(metrics["step"] * batch_size / train_images, 1),
      "training_seconds": seconds, "machine": _machine(),
      "test_bits_per_dim": metrics["bits_per_dim"],
      "test_bits_per_dim_stderr": metrics["bits_per_dim_stderr"],
      "test_images": metrics["num_images"],
      "check": {"images": len(images), "seed": [0, 0], "bits_per_dim": check,
                "unrounded_bits_per_dim": unrounded, "float16_tensors": rounded},
      "curve": curve, "sample_temperature": FLAGS.temperature,
      "size_bytes": sum(os.path.getsize(os.path.join(root, name))
                        for root, _, names in os.walk(stored) for name in names),
      "notes": FLAGS.notes,
  }
  if FLAGS.bound:
    with open(FLAGS.bound) as f:
      bound = json.load(f)
    card["importance_weighted"] = {
        "samples": bound["num_dequant_samples"], "bits_per_dim": bound["bits_per_dim"],
        "bits_per_dim_stderr": bound["bits_per_dim_stderr"],
        "test_images": bound["num_images"]}
  if FLAGS.eval:
    _take_evaluation(card, FLAGS.eval)
  with open(os.path.join(folder, pretrained.CARD_FILE), "w") as f:
    json.dump(card, f, indent=2)
    f.write("\n")
  with open(os.path.join(folder, "card.md"), "w") as f:
    f.write(pretrained.card_text(card))
  _update_docs(FLAGS.name, pretrained.docs_card_text(card))
  shutil.rmtree(scratch)
  print(json.dumps({"name": FLAGS.name, "check": check, "unrounded_check": unrounded,
                    "test_bits_per_dim": card["test_bits_per_dim"],
                    "size_bytes": card["size_bytes"]}))


def _take_evaluation(card, path):
  """The shipped model's own test figure and OOD AUROCs, from eval.py's JSON."""
  with open(path) as f:
    shipped = json.load(f)
  card["trained_test_bits_per_dim"] = card["test_bits_per_dim"]
  card["test_bits_per_dim"] = shipped["bits_per_dim"]
  card["test_bits_per_dim_stderr"] = shipped["bits_per_dim_stderr"]
  assert shipped["num_images"] == card["test_images"], (shipped, card)
  if "ood" in shipped:
    ood = shipped["ood"]
    card["ood"] = {"in": ood["in"], "ood": ood["ood"], "num_in": ood["num_in"],
                   "num_ood": ood["num_ood"],
                   "auroc": {name: row["auroc"] for name, row in ood["scores"].items()}}


def _update_docs(name, text):
  """Replaces model `name`'s section of docs/pretrained.md (between its markers)."""
  path = os.path.join(REPO, "docs", "pretrained.md")
  with open(path) as f:
    doc = f.read()
  begin, end = f"<!-- card: {name} -->\n", f"<!-- end card: {name} -->\n"
  section = begin + text + end
  if begin in doc:
    doc = doc[:doc.index(begin)] + section + doc[doc.index(end) + len(end):]
  else:
    doc += "\n" + section
  with open(path, "w") as f:
    f.write(doc)


if __name__ == "__main__":
  app.run(main)
