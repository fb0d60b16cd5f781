"""bartsmiles.model.device.resolve_device: the one check of a user's device name."""
from __future__ import annotations

import pytest
import torch

from bartsmiles.errors import DeviceError
from bartsmiles.model.device import resolve_device
from bartsmiles.model.pretrained import load_pretrained


def test_names_torch_knows_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" AUTO ") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "tpu:0"])
def test_a_name_torch_does_not_know_is_one_line(name):
    with pytest.raises(DeviceError) as info:
        resolve_device(name)
    assert "\n" not in str(info.value) and repr(name) in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_gpu_is_refused_before_loading():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="no CUDA GPU"):  # before the checkpoint is read
        load_pretrained("/nonexistent/model.pt", device="cuda")
