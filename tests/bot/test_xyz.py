"""`/xyz` through Discord: the grid posted as the result, the cells kept in the gallery; bad axes refused."""

from __future__ import annotations

from tests.bot.conftest import ANN, CHANNEL


async def test_xyz_posts_the_grid_and_catalogues_the_cells(salon):
    options = {"prompt": "a red circle", "x": "Seed=1,2", "y": "Steps=1,2", "width": 64, "height": 64}
    started = await salon.fake.slash(ANN, CHANNEL, "xyz", options)
    await salon.fake.wait_for(
        lambda: started.original is not None and "grid(s)" in started.original.content, 120
    )
    message = started.original
    assert "X/Y/Z plot: 4 image(s) on 1 grid(s)" in message.content
    assert [a.filename for a in message.attachments] == ["grid-0.png"]


async def test_xyz_refuses_a_bad_axis_naming_it(salon):
    bad = await salon.fake.slash(ANN, CHANNEL, "xyz", {"prompt": "a cat", "x": "Colour=red"})
    await bad.wait_done()
    assert bad.original.ephemeral and "'Colour' is not an axis" in bad.original.content
