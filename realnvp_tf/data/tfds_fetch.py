"""Preparing tensorflow-datasets sets, online or from the official files (checked).

Offline use: pass `manual_dir` (the official raw files, as tfds expects them) and
optionally `data_dir` (where tfds writes the prepared dataset). When the data is not
prepared, no `manual_dir` is given and the download host cannot be reached, a
`DataUnavailableError` is raised within seconds instead of tfds's minutes of retries.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib
import os
import socket
import urllib.parse

# Seconds the network check waits for a TCP connection to a download host.
NETWORK_TIMEOUT_S = 3.0


class DataUnavailableError(RuntimeError):
  """The dataset is neither prepared nor obtainable (no network, missing files)."""


# Checked for network access when a tfds set registers no download URL of its own.
_FALLBACK_HOST = "https://storage.googleapis.com"


def download_urls(source) -> list[str]:
  """The tfds download URLs of `source`'s files (from tfds's registered checksums; all
  of them for a set without a list of files)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder_name = source.tfds_name.split("/")[0]
  url_infos = tfds.builder_cls(builder_name).url_infos or {}
  wanted = set(source.manual_files)
  return sorted(url for url, ui in url_infos.items()
                if not wanted or ui.filename in wanted)


def network_available(url: str, timeout: float = NETWORK_TIMEOUT_S) -> bool:
  """Whether a TCP connection to `url`'s host can be opened within `timeout` s.

  Name resolution has no timeout of its own, so the whole check runs in a thread that
  is given up after `timeout + 1` seconds. Tests replace this function.
  """
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname
  port = parts.port or (443 if parts.scheme == "https" else 80)

  def connect() -> bool:
    try:
      with socket.create_connection((host, port), timeout=timeout):
        return True
    except OSError:
      return False

  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  try:
    return pool.submit(connect).result(timeout=timeout + 1.0)
  except concurrent.futures.TimeoutError:
    return False
  finally:
    pool.shutdown(wait=False)


def official_checksums(source) -> dict[str, str]:
  """{file name: SHA-256} of `source`'s official files, as tfds registers them (empty
  where tfds registers none)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  url_infos = tfds.builder_cls(source.tfds_name.split("/")[0]).url_infos or {}
  wanted = set(source.manual_files)
  return {ui.filename: ui.checksum for ui in url_infos.values()
          if ui.filename in wanted and ui.checksum}


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify_manual_files(source, manual_dir: str) -> None:
  """Refuses files in `manual_dir` that are not `source`'s official ones (by the
  SHA-256 tfds registers), saying whose they are when they belong to another known
  dataset: tfds itself prepares whatever files carry the expected names."""
  official = official_checksums(source)
  wrong = {name: _sha256(os.path.join(manual_dir, name))
           for name in source.manual_files if name in official}
  wrong = {name: digest for name, digest in wrong.items() if digest != official[name]}
  if not wrong:
    return
  owners = {source.file_owners().get(digest) for digest in wrong.values()}
  files = ", ".join(sorted(wrong))
  if len(owners) == 1 and None not in owners:
    owner = owners.pop()
    raise DataUnavailableError(
        f"manual_dir={manual_dir!r}: {files} are {owner}'s official files, not "
        f"{source.name}'s; pass the folder of {source.name}'s files (or use "
        f"dataset={owner}).")
  raise DataUnavailableError(
      f"manual_dir={manual_dir!r}: {files} are not the official {source.name} files "
      f"(their SHA-256 matches no dataset this package knows: a partial download or "
      f"other data?). " + _manual_dir_hint(source))


def _manual_dir_hint(source) -> str:
  if not source.manual_files:
    return (f"Prepare {source.tfds_name} on a machine with internet into a data_dir "
            f"and pass that folder here, or pass manual_dir with the files tfds "
            f"documents for it.")
  files = ", ".join(source.manual_files)
  return (
      f"Download the official files on a machine with internet and pass their folder "
      f"as manual_dir; for {source.name} tfds "
      f"expects these file names in it: {files}. The dataset is then prepared once "
      f"into data_dir and reused from there.")


def check_prepare_prerequisites(source) -> None:
  """Fails before any download if tfds could not prepare `source` here.

  tfds prepares LSUN from LMDB files through `tensorflow-io` (not a dependency of this
  package: its releases lag TensorFlow's); without it a download of tens of GB would
  be wasted. Tests that mock tfds replace this function.
  """
  for module in source.prepare_requires:
    try:
      importlib.import_module(module)
    except Exception as e:  # ImportError, or a binary built for another TF
      raise DataUnavailableError(
          f"Preparing {source.name} with tfds needs the `{module}` module "
          f"(pip: {module.replace('_', '-')}), which cannot be imported here ({e}). "
          f"Prepare it on a machine where it matches TensorFlow and pass that "
          f"data_dir.") from e


def prepare(source, data_dir: str | None = None, manual_dir: str | None = None):
  """Makes sure the tfds set of `source` (a `TfdsSource`) is prepared in `data_dir`
  and returns its tfds builder.

  Order: data already prepared in `data_dir` -> reuse it; `manual_dir` given -> check
  that the expected files are there and prepare from them with no network; otherwise
  check that the download host answers (a few seconds) and let tfds download.

  Raises:
    DataUnavailableError: files missing from `manual_dir` or not the official ones,
      or no network and no prepared data.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(source.tfds_name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  if manual_dir is not None:
    manual_dir = os.path.expanduser(os.fspath(manual_dir))
    missing = [f for f in source.manual_files
               if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
      raise DataUnavailableError(
          f"manual_dir={manual_dir!r} lacks the files tfds needs to prepare "
          f"{source.name}: missing {', '.join(missing)} (expected all of: "
          f"{', '.join(source.manual_files)}).")
    verify_manual_files(source, manual_dir)
    check_prepare_prerequisites(source)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder.download_and_prepare(download_dir=_download_dir(builder, source),
                                 download_config=config)
    return builder
  urls = download_urls(source) or [_FALLBACK_HOST]
  if not network_available(urls[0]):
    host = urllib.parse.urlsplit(urls[0]).hostname
    raise DataUnavailableError(
        f"Dataset {source.name!r} is not prepared in data_dir "
        f"{builder.data_dir_root!s} and {host} cannot be reached (no network?). "
        + _manual_dir_hint(source))
  check_prepare_prerequisites(source)
  builder.download_and_prepare(download_dir=_download_dir(builder, source))
  return builder


def _download_dir(builder, source) -> str:
  """A download folder per dataset. tfds extracts manual files by their base name
  into `downloads/extracted/`, and MNIST and Fashion-MNIST use the same names: in one
  shared folder, the second dataset prepared would get the first one's images."""
  return os.path.join(builder.data_dir_root, "downloads", source.name)
