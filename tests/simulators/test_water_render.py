"""Rendered water looks like a street flood: what stands in it is cut at the waterline and
mirrored in it (the detector learns water from these renders alone)."""

from __future__ import annotations

import numpy as np

from simulators.scenes import random_scene, render
from simulators.scenes.spec import SceneObject
from simulators.scenes.view import View

SIZE = (640, 360)
FLOOD = SceneObject("flood", 0.0, 20.0, 1.2, seed=11, angle=0.0)


def scene(*objects: SceneObject):
    base = random_scene(3, problems=0).replace(light="day", weather="clear", place="road", fire_lane=False,
                                               water="photo")
    return base.with_objects(list(objects))


def contact(obj: SceneObject, spec) -> tuple[int, int]:
    u, v = View(*SIZE, spec.camera).project(obj.x, obj.z)
    return int(u), int(v)


def test_a_car_standing_in_a_flood_is_cut_at_the_waterline():
    car = SceneObject("vehicle", 0.0, 20.0, 1.0, seed=5, angle=0.0)
    empty, _ = render(scene(), SIZE, artefacts=False)
    dry, _ = render(scene(car), SIZE, artefacts=False)
    wet, truth = render(scene(FLOOD, car), SIZE, artefacts=False)
    assert sorted(g.label for g in truth) == ["vehicle", "water"]
    x1, y1, x2, y2 = (int(a * s) for a, s in zip(next(g.box for g in truth if g.label == "vehicle"),
                                                 SIZE * 2, strict=True))
    h = y2 - y1

    def changed(a, b):
        return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 30

    body = changed(dry, empty)  # the car's own pixels
    diff = changed(dry, wet)
    low, high = slice(y2 - h // 8, y2), slice(y1, y1 + h // 3)
    assert diff[low, x1:x2][body[low, x1:x2]].mean() > 0.6  # wheels under water
    assert diff[high, x1:x2][body[high, x1:x2]].mean() < 0.05  # the roof stands clear


def test_what_stands_in_the_water_is_mirrored_in_it():
    person = SceneObject("person", 1.0, 22.0, 1.0, seed=7)
    spec = scene(FLOOD, person)
    alone, _ = render(scene(FLOOD), SIZE, artefacts=False)
    with_person, _ = render(spec, SIZE, artefacts=False)
    u, v = contact(person, spec)
    ppm = View(*SIZE, spec.camera).ppm(person.z)
    # Below the feet, where the mirrored body falls, the water changed...
    below = np.abs(alone[v + 2:v + int(ppm), u - 2:u + 3].astype(int)
                   - with_person[v + 2:v + int(ppm), u - 2:u + 3].astype(int)).sum(axis=2)
    assert (below > 30).mean() > 0.5
    # ...and it did not beside the person, beyond the mirror's reach.
    far = u + int(2 * ppm)
    beside = np.abs(alone[v + 2:v + int(ppm), far - 2:far + 3].astype(int)
                    - with_person[v + 2:v + int(ppm), far - 2:far + 3].astype(int)).sum(axis=2)
    assert (beside > 30).mean() < 0.1


def test_a_lamp_at_night_draws_a_bright_streak_on_the_flood():
    lamp = SceneObject("lamp", -1.0, 40.0, 1.0, seed=3)
    spec = scene(FLOOD, lamp).replace(light="night")
    dark, _ = render(spec.with_objects([FLOOD]), SIZE, artefacts=False)
    lit, truth = render(spec, SIZE, artefacts=False)
    x1, y1, x2, y2 = (int(a * s) for a, s in zip(next(g.box for g in truth if g.label == "water"), SIZE * 2, strict=True))
    gain = lit[y1:y2, x1:x2].astype(int).sum(axis=2) - dark[y1:y2, x1:x2].astype(int).sum(axis=2)
    column = int(np.argmax((gain > 60).sum(axis=0)))
    assert (gain[:, column] > 60).sum() >= 0.05 * SIZE[1]  # a long vertical streak of light


def test_flat_water_stays_the_default_look():
    """The bundled models learnt the flat look, so scenes draw it unless asked for "photo"."""
    flat_spec = random_scene(3, problems=0).replace(light="day", weather="clear", place="road", fire_lane=False)
    assert flat_spec.water == "flat"
    flat, truth_flat = render(flat_spec.with_objects([FLOOD]), SIZE, artefacts=False)
    photo, truth_photo = render(scene(FLOOD), SIZE, artefacts=False)
    assert [b.label for b in truth_flat] == [b.label for b in truth_photo] == ["water"]
    assert not np.array_equal(flat, photo)
