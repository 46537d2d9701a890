"""CUDA-graph replay (metagan.graphs) on a machine without a GPU: what it refuses, and that the
capture-aware pieces of the eager path are unchanged (tests/test_graphs_cuda.py checks replay
against eager on a GPU)."""

import math

import pytest
import torch

from metagan import config
from metagan.algorithm import mean_task_loss
from metagan.cli import main
from metagan.errors import ConfigError


def test_run_config_refuses_cuda_graph_off_the_gpu_path():
    with pytest.raises(ConfigError, match="run.cuda_graph .* needs run.device = cuda"):
        config.load(None, ["run.cuda_graph=true"])
    with pytest.raises(ConfigError, match="engine 'sequential'"):
        config.load(None, ["run.cuda_graph=true", 'run.device="cuda"', 'run.engine="sequential"'])
    assert config.load(None, ["run.cuda_graph=true", 'run.device="cuda"']).run.cuda_graph


def test_bench_refuses_graph_mode_on_cpu(capsys):
    assert main(["bench", "--modes", "batched-graph", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "metagan: error: mode batched-graph replays a CUDA graph; it needs --device cuda"
    ]
    assert main(["bench", "--modes", "batched,graph"]) == 2
    assert "valid: sequential, batched, batched-ext, batched-graph" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal without a GPU")
def test_graphed_step_needs_a_gpu(registries):
    from metagan.graphs import check_capturable

    with pytest.raises(ConfigError, match="need a CUDA GPU; none is available"):
        check_capturable(None, {}, None)


def test_mean_task_loss_outside_capture_is_a_float():
    v = mean_task_loss(torch.tensor([1.0, 2.0, 4.0]))
    assert type(v) is float and v == pytest.approx(7 / 3)
    assert math.isnan(mean_task_loss(torch.empty(0)))
