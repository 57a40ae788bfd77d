// The case page's snapshot labelling (hub/web/templates/_verdicts.html): drag across a
// snapshot to draw the box; the four corner inputs of its form (x1, y1, x2, y2, fractions
// of the image) take the values, and typing in them moves the box. Without this script the
// inputs are the form; both submit the same fields.
(function () {
  "use strict";
  const clamp = (v) => Math.min(1, Math.max(0, v));
  const round = (v) => Math.round(v * 1000) / 1000;

  function setup(photo) {
    const form = document.getElementById(photo.dataset.form);
    const img = photo.querySelector("img");
    const drawn = photo.querySelector(".label-box.drawn");
    if (!form || !img || !drawn) return;
    const input = (k) => form.querySelector(`input[data-corner="${k}"]`);
    const corners = ["x1", "y1", "x2", "y2"].map(input);
    if (corners.some((el) => !el)) return;
    let start = null;

    function point(ev) {
      const r = img.getBoundingClientRect();
      return [clamp((ev.clientX - r.left) / r.width), clamp((ev.clientY - r.top) / r.height)];
    }
    function show(box) {
      if (!box) { drawn.hidden = true; return; }
      const [x1, y1, x2, y2] = box;
      Object.assign(drawn.style, {left: `${x1 * 100}%`, top: `${y1 * 100}%`,
        width: `${(x2 - x1) * 100}%`, height: `${(y2 - y1) * 100}%`});
      drawn.hidden = false;
    }
    function fromInputs() {
      const v = corners.map((el) => parseFloat(el.value));
      const ok = v.every((n) => Number.isFinite(n) && n >= 0 && n <= 1) && v[0] < v[2] && v[1] < v[3];
      show(ok ? v : null);
    }
    function boxOf(a, b) {
      return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])].map(round);
    }
    photo.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault();
      start = point(ev);
      photo.setPointerCapture(ev.pointerId);
    });
    photo.addEventListener("pointermove", (ev) => {
      if (start) show(boxOf(start, point(ev)));
    });
    photo.addEventListener("pointerup", (ev) => {
      if (!start) return;
      const box = boxOf(start, point(ev));
      start = null;
      if (box[2] - box[0] < 0.01 || box[3] - box[1] < 0.01) { fromInputs(); return; }  // a click, not a box
      corners.forEach((el, i) => { el.value = String(box[i]); });
      show(box);
    });
    corners.forEach((el) => el.addEventListener("input", fromInputs));
    fromInputs();
  }

  function init() { document.querySelectorAll(".label-photo[data-form]").forEach(setup); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
