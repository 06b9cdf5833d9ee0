"""seq2seq/plots.py: attention heatmaps (the PNGs behind translate --attention-plot)."""

import torch

from seq2seq.training.plots import attention_maps


def test_attention_maps_one_png_per_sentence(tmp_path):
    w = torch.softmax(torch.randn(4, 3), dim=-1)  # (T, S)
    maps = [(["▁a", "▁b", "▁c"], ["▁c", "▁b", "▁a", "</s>"], w), None,
            (["▁x"], ["</s>"], torch.ones(1, 1))]
    assert attention_maps(maps, tmp_path / "att") == 2
    names = sorted(p.name for p in (tmp_path / "att").iterdir())
    assert names == ["attention_0001.png", "attention_0003.png"]  # numbered by input line
    assert all((tmp_path / "att" / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def test_attention_maps_nothing_to_plot(tmp_path):
    assert attention_maps([None, None], tmp_path / "none") == 0
