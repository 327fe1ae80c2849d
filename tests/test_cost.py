import pytest
from conftest import load_tool

from mnet_backbone import MobileNetV1
from mnet_backbone.cost import (count, cross_check, format_paper_tables, layer_costs, measure,
                                paper_tables, share_by_kind)

ROWS = paper_tables()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"T{r.table}-{r.label}-{r.quantity}")
def test_every_paper_number_matches_to_printed_precision(row):
    assert row.matches, row


def test_tables_cover_the_paper():
    assert {r.table for r in ROWS} == {"2", "3", "4", "5", "6", "7"}
    assert len(ROWS) == 40


def test_headline_numbers_exact():
    assert count() == (568_740_352, 4_209_088)
    assert count(0.25, 128) == (13_570_048, 463_600)


@pytest.mark.parametrize("kwargs", [dict(), dict(alpha=0.75, resolution=160),
                                    dict(separable=False, resolution=96), dict(shallow=True),
                                    dict(alpha=0.5, resolution=100)])
def test_hook_count_equals_formula(kwargs):
    analytic, hooked = cross_check(**kwargs)
    assert analytic == hooked


def test_hooks_skip_bias_bn_and_pool():
    model = MobileNetV1(num_classes=10)
    hooked = measure(model, 64)
    all_params = sum(p.numel() for p in model.parameters())
    assert hooked.params < all_params  # BN affine params and the fc bias are not counted
    assert hooked.params == count(num_classes=10).params


def test_table2_shares_sum_to_100():
    shares = share_by_kind(layer_costs())
    assert sum(s[0] for s in shares.values()) == pytest.approx(100)
    assert sum(s[1] for s in shares.values()) == pytest.approx(100)
    assert round(shares["conv3x3"][0], 2) == 1.91


@pytest.mark.slow
def test_format_and_cli(tmp_path, capsys):
    text = format_paper_tables()
    assert "Table 7" in text and "1.19" in text and "NO" not in text
    flops = load_tool("flops")
    assert flops.main([]) == 0
    assert "all rows match the paper" in capsys.readouterr().out
    png = tmp_path / "cost.png"
    assert flops.main(["--alpha", "0.5", "--rho", "0.714", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "resolution=160" in out and "(equal)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
