"""Fetch torchvision's ImageNet weights once, on a machine with internet.

    python -m biaslab.evaluation.fetch_weights --dest DIR [alex] [vgg] [inception] [fid_inception]

Downloads the IMAGENET1K_V1 state dicts that the metric backbones read (AlexNet and VGG16 for
LPIPS, Inception-v3 for the kNN memorization scores of Table 3) from torchvision's URLs into
``DIR`` through ``torch.hub.load_state_dict_from_url`` (which checks the SHA-256 prefix in the
file name), and ``fid_inception``: the FID Inception weights of the standard ``fid``
(``metrics.fid_inception_weights``) from the URL of the installed torch-fidelity
(``URL_INCEPTION_V3``; its SHA-256 is printed and the file checked to load as that network,
``evaluation.quality.fid_inception_metric``). Then it prints the config keys to set. With no net
named, all four are fetched; files already in ``DIR`` are kept. Pipelines never call this: nothing
is downloaded at run time. Offline, it stops with exit status 1 and says what to copy from where.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
from pathlib import Path

from biaslab.evaluation.backbones import WEIGHTS_FILES

__all__ = ["NETS", "main", "weights_url"]

#: backbone name -> torchvision weights enum (IMAGENET1K_V1 of each)
NETS = {
    "alex": "AlexNet_Weights",
    "vgg": "VGG16_Weights",
    "inception": "Inception_V3_Weights",
    "fid_inception": "torch_fidelity",  # not torchvision's: see fid_inception_url
}


def fid_inception_url() -> str:
    """The installed torch-fidelity's URL of the FID Inception weights."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    except ModuleNotFoundError:
        raise RuntimeError(
            "fid_inception: the standard FID needs torch-fidelity (pip install torch-fidelity), "
            "which also names the weights' URL"
        ) from None
    return URL_INCEPTION_V3


def weights_url(net: str) -> str:
    """torchvision's download URL of ``net``'s IMAGENET1K_V1 weights (torch-fidelity's for
    ``fid_inception``)."""
    import torchvision.models as tvm

    if net == "fid_inception":
        return fid_inception_url()
    url = getattr(tvm, NETS[net]).IMAGENET1K_V1.url
    if Path(url).name != WEIGHTS_FILES[net][1]:  # the file name the backbones look for
        raise RuntimeError(
            f"torchvision's {net} weights are now {Path(url).name}, not {WEIGHTS_FILES[net][1]}"
        )
    return url


def _download(url: str, dest: Path, *, check_hash: bool = True) -> Path:
    """Download ``url`` into ``dest`` (hash-checked unless told) and return the file's path."""
    import torch

    torch.hub.load_state_dict_from_url(
        url, model_dir=str(dest), map_location="cpu", progress=True, check_hash=check_hash
    )
    return dest / Path(url).name


def check_fid_inception(path: Path) -> None:
    """Print the SHA-256 of a downloaded FID Inception file and check that it builds the FID
    network (``evaluation.quality.fid_inception_metric``; raises otherwise)."""
    import hashlib

    from biaslab.evaluation.quality import fid_inception_metric

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = path.stem.rsplit("-", 1)[-1]
    agrees = "agrees with" if digest.startswith(named) else "differs from"
    print(f"fid_inception: {path.name} SHA-256 {digest} ({agrees} the {named!r} in its name)")
    fid_inception_metric(path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m biaslab.evaluation.fetch_weights",
        description="Download torchvision ImageNet weights for the metric backbones "
        "(needs internet; never run by the pipelines).",
    )
    p.add_argument("--dest", required=True, type=Path, help="folder to store the .pth files in")
    p.add_argument(
        "nets",
        nargs="*",
        metavar="NET",
        help=f"any of {', '.join(NETS)} (default: all)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [n for n in args.nets if n not in NETS]
    if unknown:  # checked here: argparse rejects an empty list against ``choices`` (3.11)
        parser.error(f"unknown NET {', '.join(unknown)} (choose from {', '.join(NETS)})")
    nets = list(dict.fromkeys(args.nets or NETS))
    dest: Path = args.dest.expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    got = {}
    for net in nets:
        url = weights_url(net)
        path = dest / Path(url).name
        if path.is_file():
            print(f"{net}: {path} already present, kept")
        else:
            print(f"{net}: downloading {url}")
            try:
                # torch-fidelity's file name need not carry a SHA-256 prefix: checked after
                path = _download(url, dest, check_hash=net != "fid_inception")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                print(
                    f"error: cannot download {url} ({reason}). This machine seems to be "
                    f"offline: run `python -m biaslab.evaluation.fetch_weights --dest DIR {net}` "
                    "on a "
                    f"machine with internet (or fetch the URL by hand) and copy "
                    f"{Path(url).name} to {dest}.",
                    file=sys.stderr,
                )
                return 1
        if net == "fid_inception":
            check_fid_inception(path)
        got[net] = path
    print("\nSet in the config (one backbone per run):")
    for net, path in got.items():
        if net == "fid_inception":
            print(f"  metrics.fid_inception_weights: {path}  (the standard fid)")
        else:
            print(f"  metrics.backbone: {net}\n  metrics.backbone_weights: {path}")
    print(
        "or copy the files to torch.hub.get_dir()/checkpoints (honours TORCH_HOME), where the "
        "backbones look by default."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
